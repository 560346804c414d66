// Package netlab builds emulated networks on one Linux machine: every host
// a network namespace of its own with one address on a private subnet,
// joined through a bridge that lives in a namespace of its own, so a lab
// touches nothing of the machine's own network and no packet leaves it.
// Links can be shaped: a rate (tc's token bucket filter on both ends of
// every host's link) and a one-way latency (a delay line in the path of the
// sockets the lab makes, since netem is not on every kernel). A host can be
// cut off (a partition, not a crash) and healed. It needs root and
// iproute2's ip and tc.
package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// labs counts the labs this process has made, for their default prefixes.
var labs atomic.Int64

// Link is the shape of every host's link to the switch; zero fields leave
// it unshaped.
type Link struct {
	// BitsPerSec limits each direction of each link (so the traffic of
	// all workers to one coordinator shares the coordinator's link).
	BitsPerSec float64
	// Latency is added once each way between any two hosts.
	Latency time.Duration
}

// Config describes a lab.
type Config struct {
	// Prefix starts the name of every namespace the lab makes; default
	// "dpcnn<pid>-<n>-" (the n-th lab of the process), which also lets New
	// sweep away what labs of dead processes left behind.
	Prefix string
	Hosts  []string
	Link   Link
}

// Lab is a running emulated network.
type Lab struct {
	cfg   Config
	hosts map[string]string // name → address
	made  []string          // namespaces, to delete on Close
}

// subnet is the labs' private subnet; it exists only inside a lab's
// namespaces, so labs running side by side do not meet.
const subnet = "10.199.77."

// maxHosts is what the subnet holds (.2 … .254).
const maxHosts = 253

// ErrUnsupported wraps every reason a lab cannot be built on this machine
// (not root, no iproute2, no namespaces, no tbf), so callers can tell a
// machine that cannot from a lab that failed.
var ErrUnsupported = errors.New("netlab: emulated networks are not supported here")

// New builds the lab. On error, nothing it made is left behind.
func New(cfg Config) (_ *Lab, err error) {
	if len(cfg.Hosts) == 0 || len(cfg.Hosts) > maxHosts {
		return nil, fmt.Errorf("netlab: %d hosts: want 1 to %d", len(cfg.Hosts), maxHosts)
	}
	if cfg.Link.BitsPerSec < 0 || cfg.Link.Latency < 0 {
		return nil, fmt.Errorf("netlab: link of %g bit/s, %s: must not be negative", cfg.Link.BitsPerSec, cfg.Link.Latency)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: network namespaces need root", ErrUnsupported)
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: iproute2's %s command: %v", ErrUnsupported, tool, err)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("dpcnn%d-%d-", os.Getpid(), labs.Add(1))
		sweep()
	}
	l := &Lab{cfg: cfg, hosts: map[string]string{}}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	sw := l.Namespace(switchHost)
	if err := l.addNamespace(sw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	// Where namespaces can be made but not wired (a container without the
	// rights for bridges or veth pairs), the machine cannot either.
	if err := run("ip", "-n", sw, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if err := run("ip", "-n", sw, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i, name := range cfg.Hosts {
		if name == "" || name == switchHost || l.hosts[name] != "" || len(port(name)) > 15 || strings.ContainsAny(name, "/ ") {
			return nil, fmt.Errorf("netlab: host name %q: want a unique name of at most 13 characters, no slash or space, not %q", name, switchHost)
		}
		ns, addr := l.Namespace(name), subnet+strconv.Itoa(i+2)
		if err := l.addNamespace(ns); err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port(name), "netns", sw},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", sw, "link", "set", port(name), "master", "br0", "up"},
		} {
			if err := run("ip", args...); err != nil {
				return nil, err
			}
		}
		if bps := cfg.Link.BitsPerSec; bps > 0 {
			// Both ends: the host's sending and its receiving.
			if err := shape(ns, "eth0", bps); err != nil {
				return nil, err
			}
			if err := shape(sw, port(name), bps); err != nil {
				return nil, err
			}
		}
		l.hosts[name] = addr
	}
	return l, nil
}

// switchHost names the bridge's namespace.
const switchHost = "switch"

// shape limits a device's sending to bps with a token bucket. The bucket
// holds a millisecond of traffic, and at least 128 KiB: veth hands over
// segments of up to 64 KiB at once (GSO), and a bucket smaller than one
// would drop them all.
func shape(ns, dev string, bps float64) error {
	burst := max(int64(bps/8/1000), 128<<10)
	err := run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(int64(bps), 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "100ms")
	if err != nil {
		return fmt.Errorf("%w: shaping a link with tc tbf: %v", ErrUnsupported, err)
	}
	return nil
}

func (l *Lab) addNamespace(ns string) error {
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	l.made = append(l.made, ns)
	return nil
}

// Namespace is the name of a host's network namespace (for ip netns exec).
func (l *Lab) Namespace(host string) string { return l.cfg.Prefix + host }

// port is a host's bridge port in the switch namespace.
func port(host string) string { return "p-" + host }

// Addr is the host's address; "" for a host not in the lab.
func (l *Lab) Addr(host string) string { return l.hosts[host] }

// How says how the links are emulated, for a benchmark's report.
func (l *Lab) How() string {
	var parts []string
	if l.cfg.Link.BitsPerSec > 0 {
		parts = append(parts, "tc tbf rate on both ends of each veth link")
	}
	if l.cfg.Link.Latency > 0 {
		parts = append(parts, "latency by a delay line in each socket's sending")
	}
	if len(parts) == 0 {
		return "veth links through a bridge, unshaped"
	}
	return "network namespaces, veth links through a bridge; " + strings.Join(parts, "; ")
}

// Cut takes the host off the network; Heal puts it back.
func (l *Lab) Cut(host string) error {
	return run("ip", "-n", l.Namespace(switchHost), "link", "set", port(host), "down")
}
func (l *Lab) Heal(host string) error {
	return run("ip", "-n", l.Namespace(switchHost), "link", "set", port(host), "up")
}

// Close deletes the lab's namespaces (and with them their links).
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", l.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sweep deletes the namespaces of labs whose processes have died (a lab's
// default prefix carries its process's ID), so a killed benchmark does not
// leave its network behind for ever.
func sweep() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "dpcnn")
		if !ok {
			continue
		}
		digits, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(digits)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
}
