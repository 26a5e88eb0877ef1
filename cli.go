package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/sessiongate/sessiongate/config"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, versionString reads the VCS revision the go command stamped.
var version = ""

// versionString is what --version prints and the "serving" log line
// carries: the -ldflags version; else the VCS revision the go command
// stamped into the build (12 hex digits, "-modified" for a tree with
// uncommitted changes); else the module version (go install …@v1.2.3); else
// "dev".
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += "-modified"
		}
		return rev
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "dev"
}

// command is one of sessiongate's commands; the empty name runs the proxy.
type command struct {
	name, args, summary string
	// flags keeps the configuration keys whose flags the command accepts
	// (nil: every key). The file and the environment set every key anyway.
	flags func(config.Key) bool
	// noConfig commands take no configuration at all.
	noConfig bool
}

// keysUnder keeps the keys named name or under one of the given sections
// ("log." keeps log.level, log.format, ...).
func keysUnder(names ...string) func(config.Key) bool {
	return func(k config.Key) bool {
		for _, n := range names {
			if k.Name == n || strings.HasSuffix(n, ".") && strings.HasPrefix(k.Name, n) {
				return true
			}
		}
		return false
	}
}

var commands = []command{
	{name: "", args: "[flags]", summary: "run the proxy"},
	{
		name: "demo", args: "[flags]",
		summary: "run a self-contained demo (embedded Redis and stand-in Rocket.Chat) and print commands to try",
		flags:   keysUnder("listen", "admin.", "proxy.", "route.", "log.", "shutdown."),
	},
	{
		name: "mirror", args: "[flags]",
		summary: "copy Rocket.Chat's sessions and login tokens from MongoDB into Redis, and keep them in step",
		flags:   keysUnder("redis.", "mirror.", "admin.", "log."),
	},
	{
		name: "check-config", args: "[flags]",
		summary: "validate the configuration and print it with secrets redacted (exit 2 on problems)",
	},
	{
		name: "healthcheck", args: "[flags]",
		summary: "exit 0 if the running sessiongate's /readyz answers 200 (for container HEALTHCHECKs)",
		flags:   keysUnder("admin.listen"),
	},
	{name: "version", summary: "print the version", noConfig: true},
	{name: "help", args: "[command]", summary: "show this help, or a command's", noConfig: true},
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage writes the help of c: for the proxy itself, the list of commands
// and every flag; for another command, its own flags.
func usage(w io.Writer, c command) {
	if c.name == "" {
		fmt.Fprintf(w, "Usage: sessiongate [command] [flags]\n\n")
		fmt.Fprintf(w, "sessiongate answers GET /api/v1/sessions/info from Redis and forwards everything else to Rocket.Chat.\n\n")
		fmt.Fprintf(w, "Commands (first on the command line; `sessiongate <command> --help` for its flags):\n")
		for _, c := range commands {
			name := c.name
			if name == "" {
				name = "(none)"
			}
			fmt.Fprintf(w, "  %-13s %s\n", name, c.summary)
		}
		fmt.Fprintf(w, "\n  --version     print the version\n\n")
		config.Usage(w, "sessiongate", nil)
		return
	}
	fmt.Fprintf(w, "Usage: sessiongate %s %s\n\n", c.name, c.args)
	fmt.Fprintf(w, "%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	if c.noConfig {
		return
	}
	fmt.Fprintln(w)
	config.Usage(w, "sessiongate "+c.name, c.flags)
}

// misplacedCommand returns the command named among args when the command
// line has flags before it (sessiongate --listen=:8081 demo): flags are
// parsed after the command, so it must come first.
func misplacedCommand(args []string) (string, bool) {
	fs := config.FlagSet("sessiongate")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		return "", false
	}
	name := fs.Arg(0)
	if _, ok := lookupCommand(name); ok && name != "" {
		return name, true
	}
	return "", false
}
