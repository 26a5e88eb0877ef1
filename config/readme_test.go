package config

import (
	"os"
	"strings"
	"testing"
)

// referenceFile is the configuration reference for users.
const referenceFile = "../docs/configuration.md"

// referenceRow is how the configuration reference starts the row of
// key k: | `name` | `SESSIONGATE_NAME` | `default` | meaning |
func referenceRow(k Key) string {
	def := yamlValue(k.Default)
	if s, ok := k.Default.(string); ok && s != "" {
		def = s // quotes only where they say "empty"
	}
	return "| `" + k.Name + "` | `" + k.EnvName() + "` | `" + def + "` | "
}

// TestDocsListEveryKey keeps docs/configuration.md, the configuration
// reference, in step with Keys: one row per key, in Keys' order, with its environment variable
// and default, and no row for a key that does not exist.
func TestDocsListEveryKey(t *testing.T) {
	raw, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	last := -1
	for _, k := range Keys {
		row := referenceRow(k)
		i := strings.Index(doc, row)
		if i < 0 {
			t.Errorf("%s has no row starting %s", referenceFile, row)
			continue
		}
		if i < last {
			t.Errorf("%s lists %s out of Keys' order", referenceFile, k.Name)
		}
		last = i
	}
	rows := 0
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| `") && strings.Contains(line, "` | `"+EnvPrefix) {
			rows++
		}
	}
	if rows != len(Keys) {
		t.Errorf("%s has %d configuration rows, want %d (one per key)", referenceFile, rows, len(Keys))
	}
}
