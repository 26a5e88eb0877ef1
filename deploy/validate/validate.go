// Package validate checks sessiongate's deployment files without a cluster
// or a Docker engine: the Kubernetes manifests in deploy/kubernetes are
// decoded strictly into the Kubernetes API types (an unknown or misspelt
// field is an error) and cross-checked; docker-compose.yml is loaded with
// the compose-spec reference loader, which validates it against the Compose
// JSON schema; the Dockerfile's build flags are compared with CI's.
//
// It is a module of its own so that the Kubernetes and Compose libraries
// stay out of sessiongate's dependencies. Run it with
//
//	cd deploy/validate && go test ./...
//
// What it cannot check: that the images exist and start, that the
// containers' health checks pass, or anything a real kube-apiserver's
// admission would refuse beyond the schema. Those need a cluster.
package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest document.
type Object struct {
	File string
	Kind string
	Name string
	// Value is a *appsv1.Deployment, *corev1.Service, *corev1.ConfigMap or
	// *corev1.Secret.
	Value any
}

// LoadManifests decodes every document of every *.yaml file in dir except
// kustomization.yaml, strictly: unknown fields, duplicate keys and kinds
// other than the four the example uses are errors.
func LoadManifests(dir string) ([]Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var objs []Object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range splitDocuments(raw) {
			o, err := decode(doc)
			if err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", filepath.Base(f), i+1, err)
			}
			o.File = filepath.Base(f)
			objs = append(objs, o)
		}
	}
	return objs, nil
}

// splitDocuments splits a YAML stream on "---" lines, dropping documents
// that hold only comments or nothing.
func splitDocuments(raw []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), raw...), []byte("\n---")) {
		if hasContent(d) {
			docs = append(docs, d)
		}
	}
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

func decode(doc []byte) (Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return Object{}, err
	}
	var v any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		v = &appsv1.Deployment{}
	case "v1 Service":
		v = &corev1.Service{}
	case "v1 ConfigMap":
		v = &corev1.ConfigMap{}
	case "v1 Secret":
		v = &corev1.Secret{}
	default:
		return Object{}, fmt.Errorf("unexpected apiVersion/kind %q %q", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return Object{}, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	name := ""
	if m, ok := v.(metav1.Object); ok {
		name = m.GetName()
	}
	return Object{Kind: tm.Kind, Name: name, Value: v}, nil
}

// Find returns the object of kind and name, or nil.
func Find[T any](objs []Object, kind, name string) *T {
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			if v, ok := o.Value.(*T); ok {
				return v
			}
		}
	}
	return nil
}

// Kustomization is the part of kustomization.yaml the example uses.
type Kustomization struct {
	APIVersion      string            `json:"apiVersion"`
	Kind            string            `json:"kind"`
	Resources       []string          `json:"resources"`
	SecretGenerator []SecretGenerator `json:"secretGenerator"`
	Images          []Image           `json:"images"`
}

// SecretGenerator generates a Secret from files: each entry is key=path.
type SecretGenerator struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
}

// Image replaces the image named Name in the resources.
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// LoadKustomization decodes dir/kustomization.yaml strictly.
func LoadKustomization(dir string) (*Kustomization, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k Kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	return &k, nil
}

// GeneratedSecrets are the Secrets the kustomization's secretGenerator
// makes, with their keys (and empty values: the files are the user's).
func (k *Kustomization) GeneratedSecrets() ([]Object, error) {
	var objs []Object
	for _, g := range k.SecretGenerator {
		s := &corev1.Secret{StringData: map[string]string{}}
		s.Name = g.Name
		for _, f := range g.Files {
			key, path, ok := strings.Cut(f, "=")
			if !ok || key == "" || path == "" {
				return nil, fmt.Errorf("secretGenerator %s: file entry %q is not key=path", g.Name, f)
			}
			s.StringData[key] = ""
		}
		objs = append(objs, Object{File: "kustomization.yaml", Kind: "Secret", Name: g.Name, Value: s})
	}
	return objs, nil
}

// ResolveImage returns image as the kustomization's images transformer
// rewrites it.
func (k *Kustomization) ResolveImage(image string) string {
	name, tag := image, ""
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		name, tag = image[:i], image[i+1:]
	}
	for _, im := range k.Images {
		if im.Name != name {
			continue
		}
		if im.NewName != "" {
			name = im.NewName
		}
		if im.NewTag != "" {
			tag = im.NewTag
		}
	}
	if tag == "" {
		return name
	}
	return name + ":" + tag
}
