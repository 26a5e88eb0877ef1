package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The deployment files live outside this package; the schema checks of
// deploy/validate (a module of its own) cannot load the configuration, so
// the checks that need config.Load are here.

var deployFiles = []string{"../docker-compose.yml", "../deploy/kubernetes/*.yaml"}

// TestDeployFilesUseKnownEnvNames: an unknown SESSIONGATE_* variable is
// ignored at start-up (Kubernetes injects some), so a misspelt one in a
// deployment file would be silently lost. Every one must name a key.
func TestDeployFilesUseKnownEnvNames(t *testing.T) {
	known := map[string]bool{}
	for _, k := range Keys {
		known[k.EnvName()] = true
	}
	envName := regexp.MustCompile(`SESSIONGATE_[A-Z0-9_]+`)
	n := 0
	for _, pattern := range deployFiles {
		files, _ := filepath.Glob(pattern)
		if len(files) == 0 {
			t.Errorf("no file matches %s", pattern)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range envName.FindAllString(string(raw), -1) {
				n++
				if !known[name] {
					t.Errorf("%s: %s names no configuration key", f, name)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no SESSIONGATE_* variable found in the deployment files")
	}
}

// TestKubernetesConfigMapLoads runs the ConfigMap's sessiongate.yaml
// through Load, with the variables the Deployment sets from Secrets.
func TestKubernetesConfigMapLoads(t *testing.T) {
	raw, err := os.ReadFile("../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind string
		Data map[string]string
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	text, ok := cm.Data["sessiongate.yaml"]
	if cm.Kind != "ConfigMap" || !ok {
		t.Fatalf("configmap.yaml: got kind %q and keys %v, want a ConfigMap with sessiongate.yaml", cm.Kind, cm.Data)
	}
	path := filepath.Join(t.TempDir(), "sessiongate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", path}, []string{
		"SESSIONGATE_REDIS_PASSWORD=from-secret",
		"SESSIONGATE_MIRROR_MONGO_URL=mongodb://sessiongate:pw@mongodb-0.mongodb:27017/rocketchat?replicaSet=rs0",
	})
	if err != nil {
		t.Fatalf("the ConfigMap's sessiongate.yaml does not load: %v", err)
	}
	// In a pod, sessiongate listens on every interface and reaches
	// Rocket.Chat over the pod's loopback.
	if !strings.HasPrefix(c.Listen, ":") || !strings.HasPrefix(c.Admin.Listen, ":") || c.Upstream.URL != "http://127.0.0.1:3000" {
		t.Errorf("listen %q, admin.listen %q, upstream.url %q: want all interfaces and Rocket.Chat on 127.0.0.1:3000",
			c.Listen, c.Admin.Listen, c.Upstream.URL)
	}
}
