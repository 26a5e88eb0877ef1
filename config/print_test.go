package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite sessiongate.example.yaml from config.Keys")

const examplePath = "../sessiongate.example.yaml"

// TestExampleFileInSync keeps sessiongate.example.yaml equal to
// WriteExample's output: every key, its default and its help. After changing
// Keys, run: go test ./config -run TestExampleFileInSync -update
func TestExampleFileInSync(t *testing.T) {
	var b bytes.Buffer
	if err := WriteExample(&b); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(examplePath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is out of date with config.Keys; run: go test ./config -run TestExampleFileInSync -update", examplePath)
	}
}

// TestExampleFileLoadsToDefaults loads the example as a --config file: it
// must be accepted (no unknown key) and change nothing.
func TestExampleFileLoadsToDefaults(t *testing.T) {
	c, err := Load([]string{"--config", examplePath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("the example file does not load to the defaults:\n got %+v\nwant %+v", c, Defaults())
	}
}

// TestExampleCommentsEveryKey checks, through a YAML parser, that each key
// of the example is commented and that its leaves are exactly Keys.
func TestExampleCommentsEveryKey(t *testing.T) {
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	leaves := map[string]bool{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			name := prefix + key.Value
			if key.HeadComment == "" {
				t.Errorf("%s has no comment", name)
			}
			if val.Kind == yaml.MappingNode {
				walk(name+".", val)
				continue
			}
			leaves[name] = true
			if k, ok := LookupKey(name); ok && !strings.Contains(key.HeadComment, k.EnvName()) {
				t.Errorf("comment of %s does not name %s", name, k.EnvName())
			}
		}
	}
	walk("", doc.Content[0])
	for _, k := range Keys {
		if !leaves[k.Name] {
			t.Errorf("key %s is missing from the example", k.Name)
		}
		delete(leaves, k.Name)
	}
	for name := range leaves {
		t.Errorf("the example has %s, which is not a key", name)
	}
}

// TestPrintRoundTrips: what check-config prints loads back (as --config) to
// the same configuration, for a value other than the default on every key
// that is not a secret.
func TestPrintRoundTrips(t *testing.T) {
	var args []string
	for _, o := range everyKey {
		if k, _ := LookupKey(o.key); k.Secret && !strings.HasSuffix(k.Name, "url") {
			continue
		}
		args = append(args, "--"+o.key+"="+o.text)
	}
	want, err := Load(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Print(&b, want); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "printed.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load([]string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("printed configuration does not load: %v\n%s", err, b.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the configuration:\n got %+v\nwant %+v\nprinted:\n%s", got, want, b.String())
	}
}

func TestPrintRedactsSecrets(t *testing.T) {
	secrets := []string{"urlpass", "plainpass", "sentinelpass", "mongopass", "awstoken"}
	c, err := Load(nil, []string{
		"SESSIONGATE_REDIS_URL=redis://gate:urlpass@redis.example:6379/0",
		"SESSIONGATE_REDIS_PASSWORD=plainpass",
		"SESSIONGATE_REDIS_SENTINEL_PASSWORD=sentinelpass",
		"SESSIONGATE_MIRROR_MONGO_URL=mongodb://reader:mongopass@m1:27017,m2:27017/rocketchat?replicaSet=rs0&authMechanismProperties=AWS_SESSION_TOKEN:awstoken",
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Print(&b, c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("printed configuration shows secret %q:\n%s", s, out)
		}
	}
	for _, want := range []string{
		`url: "redis://gate:REDACTED@redis.example:6379/0"`,
		`  password: "REDACTED"`,
		`mongo_url: "mongodb://reader:REDACTED@m1:27017,m2:27017/rocketchat?replicaSet=rs0&authMechanismProperties=REDACTED"`,
		`username: ""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printed configuration lacks %q:\n%s", want, out)
		}
	}
	// Unset secrets print as empty, so an operator sees they are unset.
	b.Reset()
	Print(&b, Defaults())
	if strings.Contains(b.String(), Redacted) {
		t.Errorf("defaults print %s although no secret is set:\n%s", Redacted, b.String())
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:pw@h:6379/0", "redis://:REDACTED@h:6379/0"},
		{"rediss://user:pw@h:6380", "rediss://user:REDACTED@h:6380"},
		{"redis://user@h:6379", "redis://user@h:6379"},
		{"redis://:p@ss/w:rd@h:6379/1", "redis://:REDACTED@h:6379/1"},
		{"mongodb://u:p@a:1,b:2/db?replicaSet=rs0", "mongodb://u:REDACTED@a:1,b:2/db?replicaSet=rs0"},
		{"mongodb://a/db?password=x&tls=true", "mongodb://a/db?password=REDACTED&tls=true"},
		{"mongodb+srv://u:p@cluster.example/db", "mongodb+srv://u:REDACTED@cluster.example/db"},
		{"not a url", "not a url"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{250 * time.Millisecond, "250ms"},
		{5 * time.Second, "5s"},
		{90 * time.Second, "90s"},
		{120 * time.Second, "2m"},
		{10 * time.Minute, "10m"},
		{2 * time.Hour, "2h"},
		{1500 * time.Microsecond, "1.5ms"},
		{-time.Second, "-1s"},
	}
	for _, tt := range tests {
		got := FormatDuration(tt.in)
		if got != tt.want {
			t.Errorf("FormatDuration(%v): got %q, want %q", tt.in, got, tt.want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != tt.in {
			t.Errorf("ParseDuration(%q): got %v, %v; want %v", got, back, err, tt.in)
		}
	}
}

// TestYAMLQuoteRoundTrips decodes yamlQuote's output with a YAML parser.
func TestYAMLQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", ":8080", "on", "no", "null", "~", "a\"b\\c", "tab\there", "line\nbreak",
		"\x00\x1b\x7f", "# not a comment", "ünïcödé ✓", "{}", "[a, b]", "\u2028", "- item"} {
		var got string
		if err := yaml.Unmarshal([]byte("v: "+yamlQuote(s)), &struct{ V *string }{&got}); err != nil {
			t.Errorf("yamlQuote(%q) = %s: %v", s, yamlQuote(s), err)
			continue
		}
		if got != s {
			t.Errorf("yamlQuote(%q) = %s decodes to %q", s, yamlQuote(s), got)
		}
	}
}
