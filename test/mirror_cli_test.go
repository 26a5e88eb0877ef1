package test

import (
	"strings"
	"testing"
)

// `sessiongate mirror` refuses a configuration it cannot use the way the
// proxy does: exit 2, one line per problem naming the key and the value.
func TestMirrorBadConfigurationExits2NamingTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		env       map[string]string
		wantLines []string
	}{
		{"no mongo_url", map[string]string{}, []string{"mirror.mongo_url: required"}},
		{"not a MongoDB URL", map[string]string{"SESSIONGATE_MIRROR_MONGO_URL": "postgres://db:5432/rc"},
			[]string{`mirror.mongo_url: "postgres://db:5432/rc": must be a mongodb:// or mongodb+srv:// URL`}},
		{"two problems", map[string]string{"SESSIONGATE_MIRROR_MONGO_URL": "mongo:27017", "SESSIONGATE_MIRROR_FOLLOW": "oplog"},
			[]string{`mirror.follow: "oplog": must be auto, change_stream or poll`, `mirror.mongo_url: "mongo:27017"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"SESSIONGATE_ADMIN_LISTEN": "", "SESSIONGATE_REDIS_URL": "redis://127.0.0.1:1/0"}
			for k, v := range tt.env {
				env[k] = v
			}
			code, out := RunGate(t, env, "mirror")
			if code != 2 {
				t.Fatalf("got exit %d, want 2; output:\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(tt.wantLines) {
				t.Errorf("got %d lines, want %d:\n%s", len(lines), len(tt.wantLines), out)
			}
			for _, want := range tt.wantLines {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
