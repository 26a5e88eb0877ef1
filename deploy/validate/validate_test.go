package validate

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot     = "../.."
	manifestsDir = "../kubernetes"
)

// loadManifests returns the manifests' objects plus the Secrets the
// kustomization generates: what `kubectl apply -k` would create.
func loadManifests(t *testing.T) []Object {
	t.Helper()
	objs, err := LoadManifests(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadKustomization(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := k.GeneratedSecrets()
	if err != nil {
		t.Fatal(err)
	}
	return append(objs, secrets...)
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := loadManifests(t)
	want := map[string]int{"Deployment": 2, "Service": 1, "ConfigMap": 1, "Secret": 2}
	got := map[string]int{}
	for _, o := range objs {
		got[o.Kind]++
		if o.Name == "" {
			t.Errorf("%s: a %s without metadata.name", o.File, o.Kind)
		}
	}
	for kind, n := range want {
		if got[kind] != n {
			t.Errorf("%s objects: got %d, want %d", kind, got[kind], n)
		}
	}
}

// TestStrictDecodingCatchesMistakes proves the check above can fail: a
// misspelt field and a wrong type in testdata are refused.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	for _, tt := range []struct{ file, want string }{
		{"typo.yaml", "terminationGracePeriod"},
		{"wrongtype.yaml", "spec.ports.port"},
	} {
		raw, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = decode(raw)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error naming %s", tt.file, err, tt.want)
		}
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k, err := LoadKustomization(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources: got %q, want %q", got, want)
	}
}

// shutdownBudget reads shutdown.delay + shutdown.timeout from the
// ConfigMap's sessiongate.yaml; both must be set there explicitly.
func shutdownBudget(t *testing.T, objs []Object) time.Duration {
	t.Helper()
	cm := Find[corev1.ConfigMap](objs, "ConfigMap", "sessiongate-config")
	if cm == nil {
		t.Fatal("no ConfigMap sessiongate-config")
	}
	var cfg struct {
		Shutdown struct{ Delay, Timeout string }
	}
	if err := yaml.Unmarshal([]byte(cm.Data["sessiongate.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	delay, err1 := time.ParseDuration(cfg.Shutdown.Delay)
	timeout, err2 := time.ParseDuration(cfg.Shutdown.Timeout)
	if err1 != nil || err2 != nil {
		t.Fatalf("sessiongate.yaml must set shutdown.delay and shutdown.timeout: %v, %v", err1, err2)
	}
	return delay + timeout
}

func container(pod *corev1.PodSpec, name string) *corev1.Container {
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	return nil
}

func portNumber(c *corev1.Container, port intstr.IntOrString) int32 {
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	return 0
}

func TestSidecarDeployment(t *testing.T) {
	objs := loadManifests(t)
	d := Find[appsv1.Deployment](objs, "Deployment", "rocketchat")
	if d == nil {
		t.Fatal("no Deployment rocketchat")
	}
	pod := &d.Spec.Template.Spec
	gate, rc := container(pod, "sessiongate"), container(pod, "rocketchat")
	if gate == nil || rc == nil {
		t.Fatalf("the pod must hold containers sessiongate and rocketchat; got %d containers", len(pod.Containers))
	}
	if portNumber(gate, intstr.FromString("http")) != 8080 || portNumber(gate, intstr.FromString("admin")) != 9090 {
		t.Errorf("sessiongate ports: got %+v, want http 8080 and admin 9090", gate.Ports)
	}

	// Probes on the admin port: liveness /healthz, readiness /readyz.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", gate.LivenessProbe, "/healthz"}, {"readiness", gate.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("sessiongate %s probe: missing or not httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || portNumber(gate, p.probe.HTTPGet.Port) != 9090 {
			t.Errorf("sessiongate %s probe: got %s on port %s, want %s on the admin port 9090",
				p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// Resources: requests and limits both set, requests within limits.
	r := gate.Resources
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[res], r.Limits[res]
		if req.IsZero() || lim.IsZero() {
			t.Errorf("sessiongate %s: request %s, limit %s; want both set", res, req.String(), lim.String())
		} else if req.Cmp(lim) > 0 {
			t.Errorf("sessiongate %s: request %s above limit %s", res, req.String(), lim.String())
		}
	}

	// The grace period outlasts sessiongate's drain, and Rocket.Chat keeps
	// serving (preStop) as long as sessiongate may drain.
	budget := shutdownBudget(t, objs)
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= budget {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdown.delay + shutdown.timeout = %v", grace, budget)
	}
	if rc.Lifecycle == nil || rc.Lifecycle.PreStop == nil || rc.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("rocketchat needs a preStop sleep so it outlives sessiongate's drain")
	} else if s := time.Duration(rc.Lifecycle.PreStop.Sleep.Seconds) * time.Second; s < budget || s >= grace {
		t.Errorf("rocketchat preStop sleep %v: want at least %v (sessiongate's drain) and below the grace period %v", s, budget, grace)
	}

	// The config comes from the ConfigMap at the path --config names.
	if !slices.Contains(gate.Args, "/etc/sessiongate/sessiongate.yaml") {
		t.Errorf("sessiongate args %q do not load /etc/sessiongate/sessiongate.yaml", gate.Args)
	}
	mounted := false
	for _, m := range gate.VolumeMounts {
		mounted = mounted || (m.MountPath == "/etc/sessiongate" && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("sessiongate does not mount its config read-only at /etc/sessiongate")
	}

	// Selector and labels agree.
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod template's labels", k, v)
		}
	}
}

func TestServiceTargetsSessiongate(t *testing.T) {
	objs := loadManifests(t)
	svc := Find[corev1.Service](objs, "Service", "rocketchat")
	d := Find[appsv1.Deployment](objs, "Deployment", "rocketchat")
	if svc == nil || d == nil {
		t.Fatal("no Service or Deployment rocketchat")
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s matches no label of the rocketchat pods", k, v)
		}
	}
	gate := container(&d.Spec.Template.Spec, "sessiongate")
	for _, p := range svc.Spec.Ports {
		if got := portNumber(gate, p.TargetPort); got != 8080 {
			t.Errorf("Service port %s targets %s (%d in sessiongate), want sessiongate's listen port 8080", p.Name, p.TargetPort.String(), got)
		}
	}
}

// TestReferencesResolve: every Secret key and ConfigMap a pod uses exists.
func TestReferencesResolve(t *testing.T) {
	objs := loadManifests(t)
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				s := Find[corev1.Secret](objs, "Secret", ref.Name)
				if s == nil {
					t.Errorf("%s/%s env %s: no Secret %s", d.Name, c.Name, e.Name, ref.Name)
				} else if _, ok := s.StringData[ref.Key]; !ok {
					t.Errorf("%s/%s env %s: Secret %s has no key %s", d.Name, c.Name, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && Find[corev1.ConfigMap](objs, "ConfigMap", v.ConfigMap.Name) == nil {
				t.Errorf("%s volume %s: no ConfigMap %s", d.Name, v.Name, v.ConfigMap.Name)
			}
		}
	}
}

// pinned reports whether an image reference names a tag other than latest
// (or a digest).
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndexByte(image, ':')
	return i > strings.LastIndexByte(image, '/') && image[i+1:] != "latest"
}

func TestManifestImagesPinned(t *testing.T) {
	k, err := LoadKustomization(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range loadManifests(t) {
		if d, ok := o.Value.(*appsv1.Deployment); ok {
			for _, c := range d.Spec.Template.Spec.Containers {
				if image := k.ResolveImage(c.Image); !pinned(image) {
					t.Errorf("%s/%s: image %q is not pinned to a version", d.Name, c.Name, image)
				}
			}
		}
	}
}

// TestNoPlaceholdersApplied: no Secret with a value is in the repository
// (the kustomization generates them from files the user writes, which git
// ignores), and the sessiongate image is the kustomization's to set, with a
// default that cannot be pulled rather than one that looks real.
func TestNoPlaceholdersApplied(t *testing.T) {
	objs, err := LoadManifests(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Kind == "Secret" {
			t.Errorf("%s: Secret %s is in the repository; generate it from the user's files instead", o.File, o.Name)
		}
	}
	k, err := LoadKustomization(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range k.SecretGenerator {
		for _, f := range g.Files {
			_, path, _ := strings.Cut(f, "=")
			dir := filepath.Dir(path)
			if !strings.Contains(string(ignore), "/deploy/kubernetes/"+dir+"/") {
				t.Errorf("secretGenerator %s reads %s, whose directory .gitignore does not ignore", g.Name, path)
			}
		}
	}
	for _, o := range objs {
		d, ok := o.Value.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != "sessiongate" && c.Name != "mirror" {
				continue
			}
			if c.Image != "sessiongate" {
				t.Errorf("%s/%s: image %q, want sessiongate (set by the kustomization's images)", d.Name, c.Name, c.Image)
			}
			if host, _, _ := strings.Cut(k.ResolveImage(c.Image), "/"); !strings.HasSuffix(host, ".invalid") {
				t.Errorf("%s/%s: the default image %q looks pullable; it must be unset until the user pushes one", d.Name, c.Name, k.ResolveImage(c.Image))
			}
		}
	}
}

func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  repoRoot,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(repoRoot, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("sessiongate", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// TestComposeFile loads docker-compose.yml like `docker compose config`
// does (schema validation, interpolation, consistency checks), then checks
// what the README promises about it.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t, map[string]string{"REDIS_PASSWORD": "from-env"})
	want := []string{"mirror", "mongodb", "redis", "rocketchat", "sessiongate"}
	if got := slices.Sorted(slices.Values(p.ServiceNames())); !slices.Equal(got, want) {
		t.Fatalf("services: got %q, want %q", got, want)
	}
	for name, s := range p.Services {
		if s.Build == nil && !pinned(s.Image) {
			t.Errorf("%s: image %q is not pinned", name, s.Image)
		}
		// Every service has a healthcheck; sessiongate's and the mirror's
		// run the binary itself (distroless has no shell or curl), which
		// asks the admin listener's /readyz.
		hasCheck := s.HealthCheck != nil && len(s.HealthCheck.Test) > 0
		if !hasCheck {
			t.Errorf("%s: no healthcheck", name)
		}
		if (name == "sessiongate" || name == "mirror") && hasCheck && !slices.Equal(s.HealthCheck.Test, []string{"CMD", "/sessiongate", "healthcheck"}) {
			t.Errorf("%s: healthcheck %q, want the binary's own healthcheck command", name, s.HealthCheck.Test)
		}
		for dep, cond := range s.DependsOn {
			if cond.Condition == "" {
				t.Errorf("%s depends on %s without a condition", name, dep)
			}
			if d, ok := p.Services[dep]; ok && cond.Condition == types.ServiceConditionHealthy && d.HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
	}

	rc, gate := p.Services["rocketchat"], p.Services["sessiongate"]
	if len(rc.Ports) != 0 {
		t.Errorf("rocketchat publishes %v: clients must go through sessiongate", rc.Ports)
	}
	published := false
	for _, port := range gate.Ports {
		published = published || (port.Target == 8080 && port.Published == "3000")
	}
	if !published {
		t.Errorf("sessiongate ports %v: want 8080 published on 3000", gate.Ports)
	}
	if got := gate.Environment["SESSIONGATE_UPSTREAM_URL"]; got == nil || *got != "http://rocketchat:3000" {
		t.Errorf("sessiongate upstream: got %v, want http://rocketchat:3000", got)
	}
	if rc.DependsOn["mongodb"].Condition != types.ServiceConditionHealthy {
		t.Errorf("rocketchat must wait for a healthy (initiated) MongoDB replica set")
	}
	if cmd := strings.Join(p.Services["mongodb"].Command, " "); !strings.Contains(cmd, "--replSet") {
		t.Errorf("mongodb command %q does not start a replica set", cmd)
	}
	if test := strings.Join(p.Services["mongodb"].HealthCheck.Test, " "); !strings.Contains(test, "rs.initiate") {
		t.Errorf("mongodb healthcheck %q does not initiate the replica set", test)
	}
	if cmd := strings.Join(p.Services["mirror"].Command, " "); cmd != "mirror" {
		t.Errorf("mirror command: got %q, want mirror", cmd)
	}

	// Docker kills after stop_grace_period: it must outlast the drain.
	delay, _ := time.ParseDuration(*gate.Environment["SESSIONGATE_SHUTDOWN_DELAY"])
	timeout, _ := time.ParseDuration(*gate.Environment["SESSIONGATE_SHUTDOWN_TIMEOUT"])
	if gate.StopGracePeriod == nil || time.Duration(*gate.StopGracePeriod) <= delay+timeout {
		t.Errorf("sessiongate stop_grace_period %v must exceed shutdown.delay + shutdown.timeout = %v", gate.StopGracePeriod, delay+timeout)
	}
}

// TestComposePasswordComesFromTheEnvironment: REDIS_PASSWORD reaches both
// Redis and every sessiongate service.
func TestComposePasswordComesFromTheEnvironment(t *testing.T) {
	p := loadCompose(t, map[string]string{"REDIS_PASSWORD": "from-env"})
	if cmd := strings.Join(p.Services["redis"].Command, " "); !strings.Contains(cmd, "--requirepass from-env") {
		t.Errorf("redis command %q does not use REDIS_PASSWORD", cmd)
	}
	for _, name := range []string{"sessiongate", "mirror"} {
		if got := p.Services[name].Environment["SESSIONGATE_REDIS_PASSWORD"]; got == nil || *got != "from-env" {
			t.Errorf("%s SESSIONGATE_REDIS_PASSWORD: got %v, want from-env", name, got)
		}
	}
}

// TestComposeRefusesWithoutRedisPassword: without REDIS_PASSWORD, Compose
// stops with a message naming it instead of starting Redis with a password
// everyone knows.
func TestComposeRefusesWithoutRedisPassword(t *testing.T) {
	_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  repoRoot,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(repoRoot, "docker-compose.yml")}},
		Environment: map[string]string{},
	}, func(o *loader.Options) { o.SetProjectName("sessiongate", true) })
	if err == nil || !strings.Contains(err.Error(), "REDIS_PASSWORD") {
		t.Errorf("docker-compose.yml without REDIS_PASSWORD: got %v, want an error naming REDIS_PASSWORD", err)
	}
}

// TestComposeDocumentsEveryVariable: each ${VAR} the Compose file reads is
// described in its header comment and in docs/deployment.md.
func TestComposeDocumentsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	var header strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		header.WriteString(line + "\n")
	}
	vars := regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(string(raw), -1)
	if len(vars) == 0 {
		t.Fatal("no ${VAR} found in docker-compose.yml")
	}
	for _, m := range vars {
		if !strings.Contains(header.String(), m[1]) {
			t.Errorf("docker-compose.yml reads %s but its header does not describe it", m[1])
		}
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("docker-compose.yml reads %s but docs/deployment.md does not describe it", m[1])
		}
	}
}

// TestComposeSchemaCatchesMistakes proves the loader refuses what the real
// `docker compose` would.
func TestComposeSchemaCatchesMistakes(t *testing.T) {
	for _, tt := range []struct{ file, want string }{
		{"compose-unknown-key.yml", "helthcheck"},
		{"compose-bad-condition.yml", "depends_on"},
	} {
		_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
			WorkingDir:  "testdata",
			ConfigFiles: []types.ConfigFile{{Filename: filepath.Join("testdata", tt.file)}},
			Environment: map[string]string{},
		}, func(o *loader.Options) { o.SetProjectName("broken", true) })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error naming %s", tt.file, err, tt.want)
		}
	}
}

// TestDockerfile checks the Dockerfile's promises that can be read without
// building it: the same go build flags as CI, a distroless final stage,
// non-root, the two ports.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`CGO_ENABLED=0 go build (-trimpath -ldflags "-s -w -X main\.version=)`)
	df, cim := flags.FindSubmatch(raw), flags.FindSubmatch(ci)
	if df == nil || cim == nil {
		t.Fatalf("no `CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X main.version=...\"` line in the Dockerfile (%v) or .ci/run (%v)", df != nil, cim != nil)
	}
	var froms, users, exposes []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		case "EXPOSE":
			exposes = append(exposes, f[1:]...)
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") {
		t.Errorf("stages %q: want a build stage and a distroless/static final stage", froms)
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "root") || strings.HasPrefix(users[len(users)-1], "0") {
		t.Errorf("USER %q: want a non-root user", users)
	}
	if !slices.Equal(exposes, []string{"8080", "9090"}) {
		t.Errorf("EXPOSE %q, want 8080 9090", exposes)
	}
}

// The mirror's Deployment probes its admin listener, and the shipped
// configuration sets mirror.max_lag (the proxy's stale-data guard).
func TestMirrorProbesAndMaxLag(t *testing.T) {
	objs := loadManifests(t)
	d := Find[appsv1.Deployment](objs, "Deployment", "sessiongate-mirror")
	if d == nil {
		t.Fatal("no Deployment sessiongate-mirror")
	}
	m := container(&d.Spec.Template.Spec, "mirror")
	if m == nil {
		t.Fatal("no container mirror")
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", m.LivenessProbe, "/healthz"}, {"readiness", m.ReadinessProbe, "/readyz"}, {"startup", m.StartupProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("mirror %s probe: missing or not httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || portNumber(m, p.probe.HTTPGet.Port) != 9090 {
			t.Errorf("mirror %s probe: got %s on port %s, want %s on the admin port 9090",
				p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	cm := Find[corev1.ConfigMap](objs, "ConfigMap", "sessiongate-config")
	if cm == nil {
		t.Fatal("no ConfigMap sessiongate-config")
	}
	var cfg struct {
		Mirror struct {
			MaxLag string `yaml:"max_lag" json:"max_lag"`
		}
	}
	if err := yaml.Unmarshal([]byte(cm.Data["sessiongate.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if d, err := time.ParseDuration(cfg.Mirror.MaxLag); err != nil || d <= 0 {
		t.Errorf("sessiongate.yaml mirror.max_lag: got %q, want a positive duration", cfg.Mirror.MaxLag)
	}
	p := loadCompose(t, map[string]string{"REDIS_PASSWORD": "x"})
	if v := p.Services["sessiongate"].Environment["SESSIONGATE_MIRROR_MAX_LAG"]; v == nil || *v == "" || *v == "0s" {
		t.Errorf("compose sessiongate SESSIONGATE_MIRROR_MAX_LAG: got %v, want set", v)
	}
}
