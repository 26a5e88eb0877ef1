package config

import (
	"os"
	"strings"
	"testing"
)

// readmeRow is how README.md's configuration reference starts the row of
// key k: | `name` | `SESSIONGATE_NAME` | `default` | meaning |
func readmeRow(k Key) string {
	def := yamlValue(k.Default)
	if s, ok := k.Default.(string); ok && s != "" {
		def = s // quotes only where they say "empty"
	}
	return "| `" + k.Name + "` | `" + k.EnvName() + "` | `" + def + "` | "
}

// TestReadmeListsEveryKey keeps README.md's configuration reference in step
// with Keys: one row per key, in Keys' order, with its environment variable
// and default, and no row for a key that does not exist.
func TestReadmeListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	last := -1
	for _, k := range Keys {
		row := readmeRow(k)
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README.md has no row starting %s", row)
			continue
		}
		if i < last {
			t.Errorf("README.md lists %s out of Keys' order", k.Name)
		}
		last = i
	}
	rows := 0
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "| `") && strings.Contains(line, "` | `"+EnvPrefix) {
			rows++
		}
	}
	if rows != len(Keys) {
		t.Errorf("README.md has %d configuration rows, want %d (one per key)", rows, len(Keys))
	}
}
