package secure

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// IsLoopback says whether addr names this machine only: a loopback IP
// (127.0.0.0/8, ::1) or "localhost", as host:port, a bare host, or a URL
// (http://127.0.0.1:2379). An empty host (":7070", every interface) is not
// loopback, nor is any name other than localhost: a name may resolve
// anywhere.
func IsLoopback(addr string) bool {
	host := hostOf(addr)
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostOf takes the host out of a URL, a host:port or a bare host.
func hostOf(addr string) string {
	if strings.Contains(addr, "://") {
		if u, err := url.Parse(addr); err == nil {
			return u.Hostname()
		}
		return ""
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.Trim(addr, "[]")
}

// CheckPlaintext refuses plaintext toward or on addr unless addr is a
// loopback address. what names the address for the error ("--listen").
func CheckPlaintext(what, addr string) error {
	if IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s: plaintext is allowed only on a loopback address (127.0.0.1, ::1, localhost); configure TLS for this address", what, addr)
}

// EnvInsecure names the environment variable that allows plaintext on
// loopback, as --insecure does.
const EnvInsecure = "DPCNN_INSECURE"

// InsecureFromEnv reads EnvInsecure through getenv (os.Getenv, or a test's
// map): 1/0, true/false and the like; unset or empty is false. Anything
// else is an error naming the variable, not a silent false.
func InsecureFromEnv(getenv func(string) string) (bool, error) {
	v := getenv(EnvInsecure)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1 or 0, true or false", EnvInsecure, v)
	}
	return b, nil
}
