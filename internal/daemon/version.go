package daemon

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version describes the build of the binary name from the module build
// information Go embeds: the module version (or "(devel)"), the VCS
// revision and time when the build recorded them, and the Go version.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", name, bi.Main.Version)
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, " revision %s", rev)
		if settings["vcs.modified"] == "true" {
			b.WriteString("+dirty")
		}
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
	}
	fmt.Fprintf(&b, " %s", bi.GoVersion)
	return b.String()
}
