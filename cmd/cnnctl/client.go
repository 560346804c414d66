package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	addr    string
	timeout time.Duration

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
	fs.StringVar(&f.tls.CA, "tls-ca", "", "CA certificate the coordinator's certificate must chain to")
	fs.StringVar(&f.tls.Cert, "tls-cert", "", "client certificate to present, when the coordinator takes certificates instead of tokens")
	fs.StringVar(&f.tls.Key, "tls-key", "", "the key of --tls-cert")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name the coordinator's certificate carries, when not the host dialed")
	fs.StringVar(&f.tokenFile, "token-file", "", "file whose first line is the bearer token to send (DPCNN_TOKEN gives the token itself)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plaintext when no --tls-ca is given, to a loopback coordinator only (1 or true)")
	envflag.Vars(fs, "coordinator", "DPCNN_COORDINATOR", "tls-ca", "DPCNN_TLS_CA", "tls-cert", "DPCNN_TLS_CERT",
		"tls-key", "DPCNN_TLS_KEY", "tls-server-name", "DPCNN_TLS_SERVER_NAME", "token-file", "DPCNN_TOKEN_FILE",
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
	t, err := f.transport()
	if err != nil {
		return nil, err
	}
	c := &client{timeout: f.timeout, transport: t}
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
// coordinator that is not the leader answers UNAVAILABLE; the client then
// asks it where the leader is and follows there, once.
type client struct {
	addr      string
	conn      *grpc.ClientConn
	timeout   time.Duration
	transport secure.Client // TLS and token; checked again for every address dialed
	followed  bool          // already moved to the leader once
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

// do runs call; when the coordinator answers UNAVAILABLE and names another
// coordinator as the leader, it dials the leader and runs call again, once.
// A call that streams must be safe to run again (watch resumes after the
// last event it saw).
func (c *client) do(ctx context.Context, what string, call func(ctx context.Context) error) error {
	err := call(ctx)
	if status.Code(err) == codes.Unavailable && !c.followed && ctx.Err() == nil {
		if leader := c.leaderAddress(ctx, err); leader != "" && leader != c.addr {
			c.followed = true
			if cerr := c.connect(leader); cerr != nil {
				return fmt.Errorf("%s: %w", what, cerr)
			}
			err = call(ctx)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.describe(err))
	}
	return nil
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
