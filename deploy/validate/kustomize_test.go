package validate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKustomizeBuilds runs `kubectl kustomize` on a copy of the example,
// with and without the secret files the user writes: without them it must
// refuse; with them the generated Secrets must be what the pods reference
// and the sessiongate image the kustomization's. Skipped without kubectl,
// unless SESSIONGATE_TEST_REQUIRE_KUBECTL=1.
func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("SESSIONGATE_TEST_REQUIRE_KUBECTL") == "1" {
			t.Fatal("kubectl is not on PATH and SESSIONGATE_TEST_REQUIRE_KUBECTL=1")
		}
		t.Skip("SKIPPED: kubectl is not on PATH; `kubectl kustomize` of the example not checked")
	}
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput(); err == nil {
		t.Errorf("kubectl kustomize without the secret files succeeded; want a refusal:\n%s", out)
	}
	k, err := LoadKustomization(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range k.SecretGenerator {
		for _, f := range g.Files {
			_, path, _ := strings.Cut(f, "=")
			os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o700)
			if err := os.WriteFile(filepath.Join(dir, path), []byte("test-value"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	built := string(out)
	for _, g := range k.SecretGenerator {
		// Generated names carry a content hash; the pods' references are
		// rewritten to it.
		if strings.Count(built, "name: "+g.Name+"-") < 2 {
			t.Errorf("Secret %s: not generated, or not referenced under its generated name:\n%s", g.Name, built)
		}
	}
	if want := k.ResolveImage("sessiongate"); strings.Count(built, "image: "+want) != 2 {
		t.Errorf("want the sessiongate and mirror containers on %s:\n%s", want, built)
	}
}
