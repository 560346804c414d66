package envflag

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flags() (*pflag.FlagSet, *string, *int, *bool, *time.Duration) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	s := fs.String("listen", "127.0.0.1:7070", "listen address")
	n := fs.Int("threads", 0, "threads")
	b := fs.Bool("insecure", false, "plaintext")
	d := fs.Duration("timeout", 10*time.Second, "timeout")
	fs.String("plain", "", "a flag with no variable")
	Vars(fs, "listen", "T_LISTEN", "threads", "T_THREADS", "insecure", "T_INSECURE", "timeout", "T_TIMEOUT")
	return fs, s, n, b, d
}

// A variable fills a flag the command line left unset, parsed as the flag
// parses; the command line wins; empty variables are unset ones.
func TestApply(t *testing.T) {
	env := map[string]string{"T_LISTEN": ":9090", "T_THREADS": "3", "T_INSECURE": "1", "T_TIMEOUT": "", "plain": "x"}
	fs, s, n, b, d := flags()
	if err := fs.Parse([]string{"--threads", "5"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *s != ":9090" || *n != 5 || !*b || *d != 10*time.Second {
		t.Errorf("listen %q, threads %d, insecure %v, timeout %v", *s, *n, *b, *d)
	}
	if got := fs.Lookup("listen").Usage; got != "listen address (T_LISTEN)" {
		t.Errorf("usage %q", got)
	}
	if Env(fs, "threads") != "T_THREADS" || Env(fs, "plain") != "" {
		t.Errorf("Env: %q, %q", Env(fs, "threads"), Env(fs, "plain"))
	}
}

// A malformed value is refused, naming the variable and the flag.
func TestApplyRefusesMalformedValues(t *testing.T) {
	for env, want := range map[string]string{
		"T_THREADS":  `T_THREADS="many" (for --threads)`,
		"T_INSECURE": `T_INSECURE="maybe" (for --insecure)`,
		"T_TIMEOUT":  `T_TIMEOUT="soon" (for --timeout)`,
	} {
		fs, _, _, _, _ := flags()
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		bad := map[string]string{"T_THREADS": "many", "T_INSECURE": "maybe", "T_TIMEOUT": "soon"}
		err := Apply(fs, func(k string) string {
			if k == env {
				return bad[k]
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", env, err, want)
		}
	}
}
