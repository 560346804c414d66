package envflag

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// annotation is the pflag annotation that holds a flag's variable.
const annotation = "dpcnn-env"

// Var names env as the environment variable of flag name in fs, and says
// so at the end of its usage text. It panics when fs has no such flag: a
// mistake in the command's own code, not in its input.
func Var(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	if f == nil {
		panic(fmt.Sprintf("envflag: no flag --%s", name))
	}
	if err := fs.SetAnnotation(name, annotation, []string{env}); err != nil {
		panic(err)
	}
	f.Usage += " (" + env + ")"
}

// Vars is Var for several flags: pairs of flag name and variable.
func Vars(fs *pflag.FlagSet, pairs ...string) {
	if len(pairs)%2 != 0 {
		panic("envflag: Vars takes pairs of flag and variable names")
	}
	for i := 0; i < len(pairs); i += 2 {
		Var(fs, pairs[i], pairs[i+1])
	}
}

// Apply sets every flag of fs that has a variable and was not given on the
// command line from getenv (os.Getenv, or a test's map), when the variable
// is set and not empty. Call it after fs has parsed the command line.
func Apply(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		envs := f.Annotations[annotation]
		if err != nil || f.Changed || len(envs) == 0 {
			return
		}
		v := getenv(envs[0])
		if v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("%s=%q (for --%s): %v", envs[0], v, f.Name, serr)
		}
	})
	return err
}

// Env returns the variable of flag name in fs, "" when it has none.
func Env(fs *pflag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil && len(f.Annotations[annotation]) > 0 {
		return f.Annotations[annotation][0]
	}
	return ""
}

// NoArgs is cobra's Args for the daemons, which take flags only: it
// refuses arguments, naming them.
func NoArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	return nil
}
