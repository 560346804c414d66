package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// defaultCoordinator is where the client commands look for a coordinator
// when neither --coordinator nor $DPCNN_COORDINATOR says.
const defaultCoordinator = "127.0.0.1:7070"

// clientFlags are the flags of every command that talks to a coordinator:
// where it is, and how to prove who we are to it.
type clientFlags struct {
	addr       string
	timeout    time.Duration
	leaderWait time.Duration

	tls        secure.Files
	serverName string
	tokenFile  string
	insecure   bool
	fs         *pflag.FlagSet
}

func (f *clientFlags) register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.addr, "coordinator", defaultCoordinator, "coordinator gRPC address host:port")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "time limit of each request (not of watching or downloading)")
	fs.DurationVar(&f.leaderWait, "leader-wait", time.Minute, "how long to keep asking while no coordinator leads (an election, a failover, a cluster starting); 0: fail at once")
	fs.StringVar(&f.tls.CA, "tls-ca", "", "CA certificate the coordinator's certificate must chain to")
	fs.StringVar(&f.tls.Cert, "tls-cert", "", "client certificate to present, when the coordinator takes certificates instead of tokens")
	fs.StringVar(&f.tls.Key, "tls-key", "", "the key of --tls-cert")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name the coordinator's certificate carries, when not the host dialed")
	fs.StringVar(&f.tokenFile, "token-file", "", "file whose first line is the bearer token to send (DPCNN_TOKEN gives the token itself)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plaintext when no --tls-ca is given, to a loopback coordinator only (1 or true)")
	envflag.Vars(fs, "coordinator", "DPCNN_COORDINATOR", "tls-ca", "DPCNN_TLS_CA", "tls-cert", "DPCNN_TLS_CERT",
		"tls-key", "DPCNN_TLS_KEY", "tls-server-name", "DPCNN_TLS_SERVER_NAME", "token-file", "DPCNN_TOKEN_FILE",
		"leader-wait", "DPCNN_LEADER_WAIT",
		"insecure", secure.EnvInsecure)
}

// transport reads the token and says how to reach coordinators. The token
// comes from --token-file when given on the command line, else from
// $DPCNN_TOKEN, else from $DPCNN_TOKEN_FILE.
func (f *clientFlags) transport() (secure.Client, error) {
	t := secure.Client{Files: f.tls, ServerName: f.serverName, Insecure: f.insecure}
	fromFlag := f.fs != nil && f.fs.Changed("token-file")
	switch env := os.Getenv("DPCNN_TOKEN"); {
	case f.tokenFile != "" && (fromFlag || env == ""):
		tok, err := secure.ReadToken(f.tokenFile)
		if err != nil {
			return secure.Client{}, fmt.Errorf("--token-file: %w", err)
		}
		t.Token = tok
	case env != "":
		if err := secure.CheckToken(env); err != nil {
			return secure.Client{}, fmt.Errorf("DPCNN_TOKEN: %w", err)
		}
		t.Token = env
	}
	return t, nil
}

// dial opens a client of the coordinator at the flags' address. No
// connection is made until the first call.
func (f *clientFlags) dial() (*client, error) {
	if err := checkHostPort(f.addr); err != nil {
		return nil, fmt.Errorf("--coordinator %q: %w", f.addr, err)
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: must be positive", f.timeout)
	}
	if f.leaderWait < 0 {
		return nil, fmt.Errorf("--leader-wait %s: must not be negative", f.leaderWait)
	}
	t, err := f.transport()
	if err != nil {
		return nil, err
	}
	c := &client{origin: f.addr, timeout: f.timeout, leaderWait: f.leaderWait, transport: t}
	if err := c.connect(f.addr); err != nil {
		return nil, err
	}
	return c, nil
}

// checkHostPort refuses an address that is not host:port with a numeric
// port, before gRPC turns it into a less helpful error.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("missing host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	return nil
}

// client calls a coordinator's JobService and ClusterService. A
// coordinator that is not the leader answers UNAVAILABLE naming the leader;
// the client follows there. While no coordinator leads (an election, a
// failover, a cluster still starting), it keeps asking the address it was
// given, for up to leaderWait.
type client struct {
	origin     string // the address the user gave (a Service, in Kubernetes)
	addr       string // the address dialed now
	conn       *grpc.ClientConn
	timeout    time.Duration
	leaderWait time.Duration
	transport  secure.Client // TLS and token; checked again for every address dialed
}

func (c *client) connect(addr string) error {
	opts, err := c.transport.DialOptions(addr)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", addr, err)
	}
	conn, err := grpc.NewClient(addr, append(opts,
		grpc.WithDisableServiceConfig(), // no DNS TXT lookup: it stalls on isolated networks
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize), grpc.MaxCallSendMsgSize(dpcnnv1.MaxMessageSize)))...)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", addr, err)
	}
	if c.conn != nil {
		c.conn.Close()
	}
	if c.origin == "" {
		c.origin = addr
	}
	c.addr, c.conn = addr, conn
	return nil
}

// Close releases the connection.
func (c *client) Close() error { return c.conn.Close() }

func (c *client) jobs() dpcnnv1.JobServiceClient { return dpcnnv1.NewJobServiceClient(c.conn) }

func (c *client) cluster() dpcnnv1.ClusterServiceClient {
	return dpcnnv1.NewClusterServiceClient(c.conn)
}

// unary runs one request under the client's time limit, following the
// leader if needed; what names the request in the error.
func (c *client) unary(ctx context.Context, what string, call func(ctx context.Context) error) error {
	return c.do(ctx, what, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return call(ctx)
	})
}

// getAndShow is a command that asks one thing and prints the answer: it
// dials, runs get as one request (what names it in errors), and writes the
// answer as JSON (output "json") or with text.
func getAndShow[T proto.Message](ctx context.Context, e *env, cf *clientFlags, output, what string,
	get func(ctx context.Context, c *client) (T, error), text func(w io.Writer, answer T)) error {
	if err := checkOutputFormat(output); err != nil {
		return err
	}
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var answer T
	err = c.unary(ctx, what, func(ctx context.Context) (err error) {
		answer, err = get(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(e.stdout, answer)
	}
	text(e.stdout, answer)
	return nil
}

// do runs call, a request that changes nothing unless a leader took it.
// A refusal by a coordinator that does not lead is safe to try again: it
// follows the leader the refusal names, or, while none leads, waits with
// backoff and asks the address it was given again, for up to leaderWait.
func (c *client) do(ctx context.Context, what string, call func(ctx context.Context) error) error {
	return c.retry(ctx, what, call, refusedByNonLeader, nil)
}

// stream runs call, a stream that resumes where it left off when run again
// (watch resumes after the last event it saw): as do, and also when the
// stream breaks because its coordinator went away or lost the lead. call
// reports each message it receives with progressed: a stream that got
// somewhere before it broke starts a new leaderWait, however long it ran.
func (c *client) stream(ctx context.Context, what string, call func(ctx context.Context, progressed func()) error) error {
	var moved bool
	return c.retry(ctx, what, func(ctx context.Context) error {
		moved = false
		return call(ctx, func() { moved = true })
	}, func(err error) bool { return status.Code(err) == codes.Unavailable }, func() bool { return moved })
}

// refusedByNonLeader says whether err is a coordinator's refusal because it
// does not lead: an UNAVAILABLE carrying a LeaderResponse detail (whose
// address is empty while no coordinator leads). A plain UNAVAILABLE may be
// a connection lost after the leader took the request.
func refusedByNonLeader(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	for _, d := range status.Convert(err).Details() {
		if _, ok := d.(*dpcnnv1.LeaderResponse); ok {
			return true
		}
	}
	return false
}

// retry runs call until it succeeds, fails for good (again says which
// errors are worth another try) or no leader has answered for leaderWait.
// The wait counts from the first failure of a run of them, and starts
// again after a call that made progress (nil: calls never do), so a stream
// that broke after hours gets its whole leaderWait, as one broken at once.
func (c *client) retry(ctx context.Context, what string, call func(ctx context.Context) error, again func(error) bool, progressed func() bool) error {
	var deadline time.Time
	wait := cluster.Backoff(100*time.Millisecond, 2*time.Second)
	hops := 0 // leaders followed without a pause: a stale pair can name each other
	for {
		err := call(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !again(err) {
			return fmt.Errorf("%s: %w", what, c.describe(err))
		}
		if deadline.IsZero() || (progressed != nil && progressed()) {
			deadline = time.Now().Add(c.leaderWait)
			wait.Reset()
		}
		if leader := c.leaderAddress(ctx, err); leader != "" && leader != c.addr && hops < 2 {
			hops++
			if cerr := c.connect(leader); cerr != nil {
				return fmt.Errorf("%s: %w", what, cerr)
			}
			continue
		}
		if !time.Now().Before(deadline) {
			if c.leaderWait > 0 {
				return fmt.Errorf("%s: %w (no leader answered for --leader-wait %s)", what, c.describe(err), c.leaderWait)
			}
			return fmt.Errorf("%s: %w", what, c.describe(err))
		}
		hops = 0
		if !cluster.Sleep(ctx, min(wait.NextBackOff(), time.Until(deadline))) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if c.addr != c.origin {
			if cerr := c.connect(c.origin); cerr != nil {
				return fmt.Errorf("%s: %w", what, cerr)
			}
		}
	}
}

// leaderAddress is where the leader is, as the coordinator that refused a
// call named it: in the refusal's LeaderResponse detail, or else by its
// answer to ClusterService.Leader.
func (c *client) leaderAddress(ctx context.Context, refusal error) string {
	for _, d := range status.Convert(refusal).Details() {
		if l, ok := d.(*dpcnnv1.LeaderResponse); ok && l.Address != "" {
			return l.Address
		}
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.timeout, 5*time.Second))
	defer cancel()
	if r, err := c.cluster().Leader(ctx, &dpcnnv1.LeaderRequest{}); err == nil && !r.AnsweredByLeader && r.Address != "" {
		return r.Address
	}
	return ""
}

// describe turns a gRPC status into an error a person can read: the
// coordinator's own message, prefixed by what kind of refusal it is.
func (c *client) describe(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch s.Code() {
	case codes.Unavailable:
		return fmt.Errorf("coordinator %s is unavailable: %s", c.addr, s.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("coordinator %s did not answer in time (--timeout %s)", c.addr, c.timeout)
	case codes.Canceled:
		return context.Canceled
	case codes.InvalidArgument:
		return fmt.Errorf("refused: %s", s.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("coordinator %s refused our credentials: %s", c.addr, s.Message())
	case codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition:
		return errors.New(s.Message())
	default:
		return fmt.Errorf("coordinator %s: %s: %s", c.addr, codeName(s.Code()), s.Message())
	}
}

// codeName spells a status code the way people read it ("permission
// denied").
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}
