package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// ErrHelp is returned by Load when --help was asked for; the caller prints
// Usage and exits 0.
var ErrHelp = pflag.ErrHelp

// FlagSet returns the flags of every key (named like the key, e.g.
// --upstream.url) plus --config. Flags it does not know stop parsing with an
// error.
func FlagSet(name string) *pflag.FlagSet { return FlagSetOf(name, nil) }

// FlagSetOf is FlagSet restricted to the keys for which keep returns true
// (all of them when keep is nil): the flags one command accepts.
func FlagSetOf(name string, keep func(Key) bool) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {}
	fs.String("config", "", "YAML configuration file")
	for _, k := range Keys {
		if keep != nil && !keep(k) {
			continue
		}
		help := k.Help + " (env " + k.EnvName() + ")"
		switch d := k.Default.(type) {
		case string:
			fs.String(k.Name, d, help)
		case bool:
			fs.Bool(k.Name, d, help)
		case int:
			fs.Int(k.Name, d, help)
		case float64:
			fs.Float64(k.Name, d, help)
		case time.Duration:
			fs.Duration(k.Name, d, help)
		case []string:
			fs.StringSlice(k.Name, d, help)
		default:
			panic(fmt.Sprintf("config: key %s has a default of unsupported type %T", k.Name, d))
		}
	}
	return fs
}

// Usage writes the flags of the keys for which keep returns true (every key
// when keep is nil) with their defaults and environment variables to w.
func Usage(w io.Writer, name string, keep func(Key) bool) {
	fmt.Fprintf(w, "Flags (precedence: defaults < --config file < SESSIONGATE_* environment < flags):\n")
	fmt.Fprint(w, FlagSetOf(name, keep).FlagUsages())
}

// Load builds the configuration from args (without the program name and
// subcommand) and environ (KEY=value pairs, as os.Environ returns). It
// returns ErrHelp for -h/--help, and otherwise every problem at once, each
// naming the key and the value.
//
// Environment variables that start with SESSIONGATE_ but name no key are
// ignored rather than refused: Kubernetes injects SESSIONGATE_PORT and the
// like for a Service called sessiongate.
func Load(args, environ []string) (*Config, error) { return LoadWith(args, environ, nil) }

// LoadWith is Load with only the flags of the keys for which keep returns
// true (see FlagSetOf); the file and the environment still set every key.
func LoadWith(args, environ []string, keep func(Key) bool) (*Config, error) {
	fs := FlagSetOf("sessiongate", keep)
	args, problems := badFlagValues(args, fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, fmt.Errorf("flags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	v := viper.New()
	for _, k := range Keys {
		v.SetDefault(k.Name, k.Default)
	}

	if path, _ := fs.GetString("config"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		v.SetConfigType("yaml")
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}

	env := envValues(environ)
	if len(env) > 0 {
		if err := v.MergeConfigMap(env); err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
	}

	for _, k := range Keys {
		if f := fs.Lookup(k.Name); f != nil && f.Changed {
			if err := v.BindPFlag(k.Name, f); err != nil {
				return nil, fmt.Errorf("flag --%s: %w", k.Name, err)
			}
		}
	}

	// Every problem at once, one line each: unknown keys, values of the
	// wrong type (named with their source and value, and replaced by the
	// default so the remaining keys can still be decoded and validated),
	// then invalid values. Flags of the wrong type are already in problems.
	for _, name := range v.AllKeys() {
		if _, ok := LookupKey(name); !ok {
			problems = append(problems, fmt.Errorf("%s: unknown key", name))
		}
	}
	unknown := len(problems) > 0
	envSet := envNames(environ)
	configPath, _ := fs.GetString("config")
	for _, k := range Keys {
		raw := v.Get(k.Name)
		why := typeProblem(k, raw)
		if why == "" {
			continue
		}
		source := configPath
		if f := fs.Lookup(k.Name); f != nil && f.Changed {
			source = "--" + k.Name
		} else if envSet[k.EnvName()] {
			source = k.EnvName()
		}
		problems = append(problems, fmt.Errorf("%s: %s from %s: %s", k.Name, shownValue(k, raw), source, why))
		v.Set(k.Name, k.Default)
	}

	var c Config
	decode := v.UnmarshalExact
	if unknown {
		decode = v.Unmarshal // the unknown keys are reported above
	}
	if err := decode(&c); err != nil {
		// Not expected after the checks above; reported as the decoder
		// words it, one line per line.
		problems = append(problems, fmt.Errorf("config: %s", strings.Join(strings.Fields(err.Error()), " ")))
	} else if err := c.Validate(); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return &c, nil
}

// envNames is the set of variable names in environ.
func envNames(environ []string) map[string]bool {
	out := make(map[string]bool, len(environ))
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok {
			out[name] = true
		}
	}
	return out
}

// envValues turns the SESSIONGATE_* variables that name a key into a nested
// map for viper's config layer, above the file and below flags.
func envValues(environ []string) map[string]any {
	byEnv := make(map[string]string, len(Keys))
	for _, k := range Keys {
		byEnv[k.EnvName()] = k.Name
	}
	out := map[string]any{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, known := byEnv[name]
		if !known {
			continue
		}
		var v any = value
		if k, _ := LookupKey(key); isList(k) {
			v = splitList(value)
		}
		setNested(out, strings.Split(key, "."), v)
	}
	return out
}

func setNested(m map[string]any, path []string, value any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}

func isList(k Key) bool {
	_, ok := k.Default.([]string)
	return ok
}

// splitList reads a list from one environment value: comma-separated,
// blanks around items trimmed, empty items dropped.
func splitList(s string) []string {
	out := []string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
