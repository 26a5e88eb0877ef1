package validate

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const monitoringDir = "../monitoring"

// pendingMetrics are queried by the dashboard but registered by work not
// merged yet; each entry names where it comes from. Remove an entry once
// the metric is registered in the code: the test then checks it like the
// others (and fails on a stale entry, so the list cannot rot).
var pendingMetrics = map[string]string{}

// runtimeMetrics are exported by the Go and process collectors that main
// registers; the dashboard uses these.
var runtimeMetrics = []string{"go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"}

// registration finds the Prometheus metrics sessiongate's code registers:
// prometheus.XxxOpts{Namespace: "sessiongate", [Subsystem: "s",] Name: "n"}
// or a Name that is already the full "sessiongate_..." name.
var registration = regexp.MustCompile(`prometheus\.(Counter|Gauge|Histogram|Summary)Opts\{\s*(?:Namespace:\s*"sessiongate",\s*(?:Subsystem:\s*"(\w+)",\s*)?Name:\s*"(\w+)"|Name:\s*"(sessiongate_\w+)")`)

// exportedMetrics returns every sample name sessiongate's /metrics can
// carry, from the registrations in the non-test Go files of the module:
// for a histogram its _bucket, _sum and _count series too.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploy" || d.Name() == "bench" || strings.HasPrefix(d.Name(), ".")) && path != repoRoot {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range registration.FindAllStringSubmatch(string(src), -1) {
			name := m[4]
			if name == "" {
				name = "sessiongate_" + m[3]
				if m[2] != "" {
					name = "sessiongate_" + m[2] + "_" + m[3]
				}
			}
			names[name] = true
			if m[1] == "Histogram" || m[1] == "Summary" {
				names[name+"_sum"], names[name+"_count"] = true, true
			}
			if m[1] == "Histogram" {
				names[name+"_bucket"] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scan must see the metrics everyone knows, or it proves nothing.
	for _, must := range []string{"sessiongate_requests_total", "sessiongate_request_duration_seconds_bucket", "sessiongate_sessions_info_total", "sessiongate_ready"} {
		if !names[must] {
			t.Fatalf("the registration scan did not find %s (found %v): fix the scan", must, slices.Sorted(func(yield func(string) bool) {
				for n := range names {
					if !yield(n) {
						return
					}
				}
			}))
		}
	}
	for _, n := range runtimeMetrics {
		names[n] = true
	}
	return names
}

var metricName = regexp.MustCompile(`\b(?:sessiongate|go|process)_[a-zA-Z0-9_]+`)

// checkQueried reports every metric a query text uses that sessiongate does
// not export.
func checkQueried(t *testing.T, where, query string, exported map[string]bool, used map[string]bool) {
	t.Helper()
	for _, name := range metricName.FindAllString(query, -1) {
		used[name] = true
		if !exported[name] && pendingMetrics[name] == "" {
			t.Errorf("%s queries %s, which sessiongate does not export", where, name)
		}
	}
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboardQueriesExportedMetrics parses the Grafana dashboard and
// checks every metric its queries and variables use against what
// sessiongate's /metrics exports, plus the dashboard's own consistency
// (unique panel ids, a query per panel, the data source variable).
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "sessiongate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("sessiongate-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q: want both", d.UID, d.Title)
	}
	exported := exportedMetrics(t)
	used := map[string]bool{}
	hasDatasourceVar := false
	for _, v := range d.Templating.List {
		hasDatasourceVar = hasDatasourceVar || (v.Name == "datasource" && v.Type == "datasource")
		q, _ := json.Marshal(v.Query)
		checkQueried(t, "variable "+v.Name, string(q), exported, used)
	}
	if !hasDatasourceVar {
		t.Error("no datasource variable: the dashboard would be tied to one Prometheus")
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: grid position %+v is off the 24-column grid", p.Title, p.GridPos)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s has no expression", p.Title, tg.RefID)
				}
				checkQueried(t, "panel "+p.Title, tg.Expr, exported, used)
			}
		}
	}
	walk(d.Panels)

	// What the dashboard must show.
	for _, want := range []string{
		"sessiongate_requests_total", "sessiongate_request_duration_seconds_bucket",
		"sessiongate_upstream_errors_total", "sessiongate_sessions_info_total",
		"sessiongate_sessions_info_redis_duration_seconds_bucket", "sessiongate_websocket_tunnels_open",
		"sessiongate_mirror_lag_seconds", "sessiongate_shadow_total",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	for name, origin := range pendingMetrics {
		if exported[name] {
			t.Errorf("%s (%s) is registered now: remove it from pendingMetrics", name, origin)
		}
	}
}

// TestAlertRulesQueryExportedMetrics: the alert rules use only metrics
// sessiongate exports (promtool checks their syntax, not that the series
// exist).
func TestAlertRulesQueryExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	used := map[string]bool{}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			checkQueried(t, "alert "+r.Alert, r.Expr, exported, used)
		}
	}
	for _, want := range []string{"sessiongate_upstream_errors_total", "sessiongate_sessions_info_total", "sessiongate_mirror_lag_seconds", "sessiongate_ready"} {
		if !used[want] {
			t.Errorf("no alert rule uses %s", want)
		}
	}
	if n == 0 {
		t.Error("alerts.yaml has no rules")
	}
}
