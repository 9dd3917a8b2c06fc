package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Flags holds a command's settings. Each setting is defined once, by one
// call that names its flag, its help and optionally an environment
// variable; its default is the value the target already holds (normally a
// service's Defaults()), so the flag's default and the configuration's
// default cannot disagree. Precedence: the command line, then the
// environment variable, then the default.
type Flags struct {
	fs   *flag.FlagSet
	envs []envSetting
}

type envSetting struct{ flag, env string }

// NewFlags returns an empty set of settings of the command name.
func NewFlags(name string) *Flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Parse reports errors itself
	return &Flags{fs: fs}
}

// Option refines a setting.
type Option func(*setting)

type setting struct{ env string }

// FromEnv makes the environment variable name the setting's fallback when its
// flag is not given.
func FromEnv(name string) Option { return func(s *setting) { s.env = name } }

func (f *Flags) define(v flag.Value, name, help string, opts []Option) {
	f.fs.Var(v, name, f.help(name, help, opts))
}

// help registers the setting's environment variable and returns its help.
func (f *Flags) help(name, help string, opts []Option) string {
	var s setting
	for _, o := range opts {
		o(&s)
	}
	if s.env != "" {
		help += " (env " + s.env + ")"
		f.envs = append(f.envs, envSetting{name, s.env})
	}
	return help
}

// String defines a string setting stored in p.
func (f *Flags) String(p *string, name, help string, opts ...Option) {
	f.fs.StringVar(p, name, *p, f.help(name, help, opts))
}

// Bool defines a boolean setting stored in p.
func (f *Flags) Bool(p *bool, name, help string, opts ...Option) {
	f.fs.BoolVar(p, name, *p, f.help(name, help, opts))
}

// OnOff defines a boolean setting stored in p that also takes on/off and
// yes/no (environment variables read SWITCHBOARD_KAFKA_TLS=on); given
// without a value on the command line it is on.
func (f *Flags) OnOff(p *bool, name, help string, opts ...Option) {
	f.define((*onOffValue)(p), name, help, opts)
}

// Int defines an int setting stored in p.
func (f *Flags) Int(p *int, name, help string, opts ...Option) {
	f.fs.IntVar(p, name, *p, f.help(name, help, opts))
}

// Int32 defines an int32 setting stored in p.
func (f *Flags) Int32(p *int32, name, help string, opts ...Option) {
	f.define((*int32Value)(p), name, help, opts)
}

// Int64 defines an int64 setting stored in p.
func (f *Flags) Int64(p *int64, name, help string, opts ...Option) {
	f.fs.Int64Var(p, name, *p, f.help(name, help, opts))
}

// Uint64 defines a uint64 setting stored in p.
func (f *Flags) Uint64(p *uint64, name, help string, opts ...Option) {
	f.fs.Uint64Var(p, name, *p, f.help(name, help, opts))
}

// Float64 defines a float64 setting stored in p.
func (f *Flags) Float64(p *float64, name, help string, opts ...Option) {
	f.fs.Float64Var(p, name, *p, f.help(name, help, opts))
}

// Duration defines a duration setting stored in p.
func (f *Flags) Duration(p *time.Duration, name, help string, opts ...Option) {
	f.fs.DurationVar(p, name, *p, f.help(name, help, opts))
}

// List defines a comma-separated list stored in p (empty entries dropped).
func (f *Flags) List(p *[]string, name, help string, opts ...Option) {
	f.define((*listValue)(p), name, help, opts)
}

// Func defines a setting parsed by set, shown with the default def.
func (f *Flags) Func(name, def, help string, set func(string) error, opts ...Option) {
	f.define(&funcValue{def: def, set: set}, name, help, opts)
}

// Alias makes old another name of the setting name (defined before), for
// flags that were renamed: both set the same value.
func (f *Flags) Alias(old, name string) {
	fl := f.fs.Lookup(name)
	f.fs.Var(fl.Value, old, "deprecated: use --"+name)
}

// Parse parses args, then fills each setting not given on the command line
// from its environment variable (read with getenv) when that is set. It
// returns flag.ErrHelp for -h and --help.
func (f *Flags) Parse(args []string, getenv func(string) string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", f.fs.Args())
	}
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var errs []error
	for _, e := range f.envs {
		if given[e.flag] || getenv == nil {
			continue
		}
		if v := getenv(e.env); v != "" {
			if err := f.fs.Set(e.flag, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.env, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Given reports whether the setting name was set, on the command line or
// by its environment variable.
func (f *Flags) Given(name string) bool {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// Usage writes the settings and their defaults to w.
func (f *Flags) Usage(w io.Writer) {
	f.fs.SetOutput(w)
	defer f.fs.SetOutput(io.Discard)
	fmt.Fprintf(w, "Usage of %s:\n", f.fs.Name())
	f.fs.PrintDefaults()
}

type int32Value int32

func (v *int32Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 32)
	if err != nil {
		return numErr(err)
	}
	*v = int32Value(n)
	return nil
}
func (v *int32Value) String() string { return strconv.FormatInt(int64(*v), 10) }

type onOffValue bool

func (v *onOffValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "yes", "true", "1", "t":
		*v = true
	case "off", "no", "false", "0", "f":
		*v = false
	default:
		return fmt.Errorf("%q: want on or off", s)
	}
	return nil
}
func (v *onOffValue) String() string {
	if v != nil && *v {
		return "on"
	}
	return "off"
}
func (v *onOffValue) IsBoolFlag() bool { return true }

type listValue []string

func (v *listValue) Set(s string) error {
	*v = SplitList(s)
	return nil
}
func (v *listValue) String() string { return strings.Join(*v, ",") }

type funcValue struct {
	def string
	set func(string) error
}

func (v *funcValue) Set(s string) error { return v.set(s) }
func (v *funcValue) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

// numErr drops strconv's quoting of the whole call ("strconv.ParseInt:
// parsing ...") down to what was wrong.
func numErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

// SplitList splits a comma-separated list, trimming spaces and dropping
// empty entries.
func SplitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
