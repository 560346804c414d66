package secure

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// The rules below are shared by every dpcnn command, and their errors name
// the flags those commands share: --tls-ca, --tls-cert, --tls-key,
// --tls-server-name, --token-file, --etcd-ca, --etcd-cert, --etcd-key and
// --insecure (each also an environment variable).

// ErrNoTransportSecurity says that a command was given neither TLS files
// nor --insecure.
var ErrNoTransportSecurity = errors.New("no transport security: give --tls-ca, --tls-cert and --tls-key " +
	"(`cnnctl certs` makes a development set), or --insecure (DPCNN_INSECURE=1) for plaintext on a loopback address")

// Client says how a process dials a coordinator.
type Client struct {
	// Files: the CA that signed the coordinator's certificate, and this
	// client's certificate and key (required for workers, optional for
	// cnnctl, which may prove itself with Token instead).
	Files Files
	// ServerName is the name the coordinator's certificate must carry,
	// when not the host dialed.
	ServerName string
	// Token is sent as a bearer token with every call, when set.
	Token string
	// Insecure allows plaintext when Files names no file, toward loopback
	// addresses only.
	Insecure bool
}

// Plaintext says whether connections go without TLS.
func (c Client) Plaintext() bool { return c.Files.IsZero() }

// Check refuses a configuration that cannot dial addr: no TLS and no
// --insecure, plaintext toward an address that is not loopback, broken
// TLS files.
func (c Client) Check(addr string) error {
	_, err := c.DialOptions(addr)
	return err
}

// DialOptions are the gRPC dial options that secure a connection to addr
// as c says, or an error saying why addr may not be dialed.
func (c Client) DialOptions(addr string) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if c.Plaintext() {
		if !c.Insecure {
			return nil, ErrNoTransportSecurity
		}
		if err := CheckPlaintext("--insecure: coordinator", addr); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg, err := ClientTLS(c.Files, c.ServerName)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if c.Token != "" {
		if err := CheckToken(c.Token); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(NewTokenCredentials(c.Token, c.Plaintext())))
	}
	return opts, nil
}

// Server says how a coordinator serves.
type Server struct {
	// Files: the server's certificate and key, and the CA that client
	// certificates must chain to.
	Files Files
	// TokenFile holds the bearer tokens cnnctl's calls must carry; empty:
	// they need a client certificate instead.
	TokenFile string
	// Insecure allows plaintext when Files names no file, on a loopback
	// listen address only.
	Insecure bool
}

// Plaintext says whether the server serves without TLS.
func (s Server) Plaintext() bool { return s.Files.IsZero() }

// Load checks s against the listen address and reads its files: the
// transport credentials (nil for plaintext) and the tokens (nil when no
// token file is named).
func (s Server) Load(listen string) (credentials.TransportCredentials, *Tokens, error) {
	var tokens *Tokens
	if s.TokenFile != "" {
		var err error
		if tokens, err = LoadTokens(s.TokenFile); err != nil {
			return nil, nil, err
		}
	}
	if s.Plaintext() {
		if !s.Insecure {
			return nil, nil, ErrNoTransportSecurity
		}
		if err := CheckPlaintext("--insecure: listen address", listen); err != nil {
			return nil, nil, err
		}
		return nil, tokens, nil
	}
	cfg, err := ServerTLS(s.Files, false)
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg), tokens, nil
}

// EtcdTLS is the TLS configuration of an etcd client dialing endpoints:
// nil for plaintext. https:// endpoints (and ones without a scheme, when
// files are given) get TLS from files: files.CA verifies etcd, and
// files.Cert and Key are presented when etcd asks for client
// certificates. http:// endpoints are plaintext, allowed with insecure and
// to loopback addresses only. Mixed schemes are refused.
func EtcdTLS(files Files, insecureOK bool, endpoints []string) (*tls.Config, error) {
	var https, http int
	for _, ep := range endpoints {
		scheme, _, ok := strings.Cut(ep, "://")
		switch {
		case !ok && !files.IsZero(), ok && strings.EqualFold(scheme, "https"):
			https++
		case !ok, strings.EqualFold(scheme, "http"):
			http++
		default:
			return nil, fmt.Errorf("etcd endpoint %s: scheme %q: want https:// (or http:// on loopback with --insecure)", ep, scheme)
		}
	}
	switch {
	case https > 0 && http > 0:
		return nil, fmt.Errorf("etcd endpoints %s: some https, some http: use one scheme", strings.Join(endpoints, ","))
	case http > 0:
		if !insecureOK {
			return nil, fmt.Errorf("etcd endpoints %s are plaintext: use https:// with --etcd-ca (and --etcd-cert, --etcd-key when etcd checks client certificates; they default to --tls-*), or --insecure for etcd on a loopback address", strings.Join(endpoints, ","))
		}
		for _, ep := range endpoints {
			if err := CheckPlaintext("--insecure: etcd endpoint", ep); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	if files.IsZero() {
		return nil, fmt.Errorf("etcd endpoints %s use TLS: give --etcd-ca (or --tls-ca), and a client certificate with --etcd-cert and --etcd-key when etcd checks them", strings.Join(endpoints, ","))
	}
	cfg, err := ClientTLS(files, "")
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return cfg, nil
}
