package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// typeProblem says why raw, the value viper holds for k, cannot become k's
// type, or returns "" when it can. It accepts what viper's decoder accepts
// (weakly typed input: "true" for a bool, "5" for an int, a comma-separated
// string for a list), so a value that loads today still loads; what it
// refuses would otherwise stop the decoder with a message that neither
// names the value nor lets the other problems be reported.
func typeProblem(k Key, raw any) string {
	switch k.Default.(type) {
	case time.Duration:
		switch x := raw.(type) {
		case time.Duration, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
			return ""
		case string:
			if _, err := time.ParseDuration(x); err != nil {
				return "not a duration (Go syntax: 250ms, 5s, 2m, 1h30m)"
			}
			return ""
		}
		return "not a duration (Go syntax: 250ms, 5s, 2m, 1h30m)"
	case int:
		switch x := raw.(type) {
		case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, bool:
			return ""
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				return ""
			}
		case string:
			if _, err := strconv.ParseInt(strings.TrimSpace(x), 0, 0); err == nil || x == "" {
				return ""
			}
		}
		return "not an integer"
	case bool:
		switch x := raw.(type) {
		case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float64:
			return ""
		case string:
			if _, err := strconv.ParseBool(x); err == nil || x == "" {
				return ""
			}
		}
		return "not true or false"
	case string:
		if isScalar(raw) {
			return ""
		}
		return "not a single value (a string)"
	case []string:
		switch x := raw.(type) {
		case string, []string:
			return ""
		case []any:
			for _, item := range x {
				if !isScalar(item) {
					return "not a list of strings"
				}
			}
			return ""
		}
		return "not a list of strings"
	}
	return ""
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Duration:
		return true
	}
	return false
}

// shownValue is how an error message shows k's raw value: quoted when it is
// a string, hidden when it may hold a password.
func shownValue(k Key, raw any) string {
	if k.Secret {
		return Redacted
	}
	if s, ok := raw.(string); ok {
		if strings.HasSuffix(k.Name, "url") {
			s = RedactURL(s)
		}
		return strconv.Quote(s)
	}
	return fmt.Sprint(raw)
}

// badFlagValues takes out of args the flags of fs's keys whose values
// cannot become the key's type, and returns what is left and one problem
// per flag taken out. pflag stops at the first such value; taking them out
// first lets Load report them together with every other problem.
func badFlagValues(args []string, fs *pflag.FlagSet) ([]string, []error) {
	var kept []string
	var problems []error
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			kept = append(kept, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		k, known := LookupKey(name)
		f := fs.Lookup(name)
		if !strings.HasPrefix(arg, "--") || !known || f == nil {
			kept = append(kept, arg)
			continue
		}
		n := 1
		if !hasValue {
			if f.NoOptDefVal != "" || i+1 >= len(args) {
				kept = append(kept, arg) // a bare bool flag, or pflag's own error
				continue
			}
			value, n = args[i+1], 2
		}
		if why := typeProblem(k, value); why != "" {
			problems = append(problems, fmt.Errorf("%s: %s from --%s: %s", k.Name, shownValue(k, value), k.Name, why))
		} else {
			kept = append(kept, args[i:i+n]...)
		}
		i += n - 1
	}
	return kept, problems
}
