package config

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Redacted replaces a secret, or the password of a URL, when a configuration
// is printed.
const Redacted = "REDACTED"

// Print writes c as YAML, in the order of Keys, for `sessiongate
// check-config`: the same layout a --config file has, so the output can be
// saved and loaded again. Secrets are redacted: keys marked Secret in Keys,
// and the credentials inside URL values (redis.url, mirror.mongo_url), whose
// host and path stay visible because they are what an operator checks.
func Print(w io.Writer, c *Config) error {
	return writeYAML(w, c, false)
}

// WriteExample writes the default configuration as YAML with a comment on
// every key (its help text and environment variable): the content of
// sessiongate.example.yaml, which a test keeps equal to this output.
func WriteExample(w io.Writer) error {
	return writeYAML(w, Defaults(), true)
}

// Defaults returns the configuration made of every key's default only.
func Defaults() *Config {
	c, err := Load(nil, nil)
	if err != nil {
		// The defaults are constants checked by tests; a failure here is a
		// programming error, not a user's.
		panic("config: defaults do not load: " + err.Error())
	}
	return c
}

// sections describes each group of keys in the example file.
var sections = map[string]string{
	"upstream":       "The Rocket.Chat server every request but the route is forwarded to, and the connection pool to it.",
	"proxy":          "The client-facing server.",
	"redis":          "Redis, where the route reads tokens and sessions (data contract in docs/data-contract.md). One topology is used:\nCluster when cluster.addrs is set, else Sentinel when sentinel.addrs is set, else the standalone url.",
	"redis.sentinel": "Redis Sentinel (used when addrs is not empty).",
	"redis.cluster":  "Redis Cluster (used when addrs is not empty).",
	"route":          "The intercepted route, GET /api/v1/sessions/info.",
	"admin":          "Probes (/healthz, /readyz) and metrics (/metrics).",
	"log":            "Logs, on standard error. Tokens, cookies and Authorization headers are never logged.",
	"shutdown":       "Draining on SIGTERM/SIGINT: /readyz turns 503, serving goes on for delay, then in-flight work gets timeout.",
	"mirror":         "`sessiongate mirror`, which copies Rocket.Chat's sessions and login tokens from MongoDB into Redis.",

	"sessions":        "The sessions/info route's checks against the upstream.",
	"sessions.shadow": "Shadow mode: compare a sample of the route's answers with the upstream's own (docs/shadow.md).",
}

func writeYAML(w io.Writer, c *Config, example bool) error {
	var b strings.Builder
	if example {
		b.WriteString("# sessiongate configuration: every key, set to its default, with what it does.\n")
		b.WriteString("# Use it with `sessiongate --config sessiongate.yaml`; keep only the keys you change.\n")
		b.WriteString("# Precedence: defaults < this file < SESSIONGATE_* environment < flags (--upstream.url=...).\n")
		b.WriteString("# Each key's environment variable is SESSIONGATE_ + the key upper-cased with '.' -> '_'.\n")
		b.WriteString("# Unknown keys stop start-up. `sessiongate check-config --config FILE` validates a file.\n")
		b.WriteString("# This file is generated from config.Keys (config/print.go); a test keeps it in sync.\n")
	} else {
		b.WriteString("# sessiongate effective configuration (secrets redacted)\n")
	}

	var open []string // the mappings the previous key sits in
	done := map[string]bool{}
	for _, k := range Keys {
		path := strings.Split(k.Name, ".")
		parents := path[:len(path)-1]
		common := 0
		for common < len(open) && common < len(parents) && open[common] == parents[common] {
			common++
		}
		for i := common; i < len(parents); i++ {
			name := strings.Join(parents[:i+1], ".")
			if done[name] {
				// YAML forbids a mapping key twice: Keys must list a
				// section's keys together.
				return fmt.Errorf("config: key %s is not listed with the other keys of %s", k.Name, name)
			}
			done[name] = true
			indent := strings.Repeat("  ", i)
			if example {
				b.WriteString("\n")
				writeComment(&b, indent, sections[name])
			}
			b.WriteString(indent + parents[i] + ":\n")
		}
		for i := common; i < len(open); i++ {
			done[strings.Join(open[:i+1], ".")] = true
		}
		open = parents

		v, err := c.value(k.Name)
		if err != nil {
			return err
		}
		indent := strings.Repeat("  ", len(parents))
		if example {
			if len(parents) == 0 {
				b.WriteString("\n")
			}
			writeComment(&b, indent, k.Help+" (env "+k.EnvName()+")")
		}
		b.WriteString(indent + path[len(path)-1] + ": " + yamlValue(redact(k, v)) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeComment(b *strings.Builder, indent, text string) {
	for _, line := range strings.Split(text, "\n") {
		b.WriteString(indent + "# " + line + "\n")
	}
}

// value returns the field of c that the dotted key name sets, found through
// the mapstructure tags the loader uses.
func (c *Config) value(name string) (any, error) {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(name, ".") {
		if v.Kind() != reflect.Struct {
			return nil, fmt.Errorf("config: key %s: %s is not a section", name, part)
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("mapstructure") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("config: key %s has no field in Config", name)
		}
	}
	return v.Interface(), nil
}

// redact hides what must not be printed: a Secret key's whole value, and
// the credentials of URL-valued keys (whose host is worth seeing).
func redact(k Key, v any) any {
	s, ok := v.(string)
	if !ok || s == "" {
		return v
	}
	if strings.HasSuffix(k.Name, "url") {
		return RedactURL(s)
	}
	if k.Secret {
		return Redacted
	}
	return s
}

// RedactURL replaces the password in a URL's user information, and the
// values of query parameters that look like credentials, with Redacted. It
// works on the text without parsing it, so a malformed URL is redacted too:
// everything between "://" and the last '@' is user information (a password
// with an unescaped '/' or '@' is still covered). A user name alone is kept:
// go-redis and MongoDB both read "scheme://user@host" as a user without a
// password.
func RedactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	head, rest := s[:i+3], s[i+3:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			rest = user + ":" + Redacted + rest[at:]
		}
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		params := strings.Split(rest[q+1:], "&")
		for j, p := range params {
			name, _, hasValue := strings.Cut(p, "=")
			if hasValue && credentialParam(name) {
				params[j] = name + "=" + Redacted
			}
		}
		rest = rest[:q+1] + strings.Join(params, "&")
	}
	return head + rest
}

// credentialParam reports query parameters that carry secrets, e.g.
// MongoDB's authMechanismProperties (AWS session tokens).
func credentialParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"pass", "secret", "token", "authmechanismproperties"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// yamlValue formats one value the way the loader reads it back: strings
// always double-quoted (so "on", "no" or ":8080" stay strings), durations in
// Go syntax, lists in flow style.
func yamlValue(v any) string {
	switch v := v.(type) {
	case string:
		return yamlQuote(v)
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case time.Duration:
		return FormatDuration(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = yamlQuote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	default:
		return yamlQuote(fmt.Sprint(v))
	}
}

// FormatDuration writes d in the largest unit that divides it exactly
// ("90s", "2m", "250ms"), which time.ParseDuration reads back; other values
// fall back to d.String(). time.Duration's own String writes "2m0s".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// yamlQuote writes s as a YAML double-quoted scalar (YAML 1.2 §7.3.1):
// backslash and quote escaped, control characters as \u escapes, everything
// else as is. Bytes that are not UTF-8 become \x escapes, which YAML reads as
// U+0080–U+00FF: such a value cannot round-trip, and no setting needs one.
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}
