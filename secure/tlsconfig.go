package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files of one side of a mutual-TLS connection.
type Files struct {
	// CA holds the certificate(s) of the authority the peer's certificate
	// must chain to.
	CA string
	// Cert and Key are this side's certificate (chain) and private key.
	Cert, Key string
}

// IsZero says whether no file is named.
func (f Files) IsZero() bool { return f == Files{} }

// Or returns f, or def where f names no file at all.
func (f Files) Or(def Files) Files {
	if f.IsZero() {
		return def
	}
	return f
}

// ServerTLS is the configuration of a server that proves itself with
// f.Cert and f.Key and verifies the client certificates it is given
// against f.CA. When requireClientCert is false a client may come without
// a certificate (and then has to prove itself otherwise, with a token:
// see Authenticator); a certificate it does present must verify.
func ServerTLS(f Files, requireClientCert bool) (*tls.Config, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("secure: server TLS needs a CA, a certificate and a key (got ca %q, cert %q, key %q)", f.CA, f.Cert, f.Key)
	}
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	auth := tls.VerifyClientCertIfGiven
	if requireClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   auth,
	}, nil
}

// WorkerPeerTLS is the configuration of a worker's reduce service: a
// server as ServerTLS's, client certificates required, that takes only
// clients whose certificate names WorkerServerName, the name only the
// cluster's CA gives workers. Any other certificate of the CA (cnnctl's,
// a coordinator's) is refused in the handshake: only workers push sums
// and fetch parameters.
func WorkerPeerTLS(f Files) (*tls.Config, error) {
	cfg, err := ServerTLS(f, true)
	if err != nil {
		return nil, err
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("secure: the reduce service takes workers only: no client certificate")
		}
		leaf := cs.PeerCertificates[0]
		if err := leaf.VerifyHostname(WorkerServerName); err != nil {
			return fmt.Errorf("secure: the reduce service takes workers only: the client certificate %q does not name %s", leaf.Subject.CommonName, WorkerServerName)
		}
		return nil
	}
	return cfg, nil
}

// ClientTLS is the configuration of a client that verifies the server
// against f.CA and, when f names them, presents f.Cert and f.Key.
// serverName, when not empty, is the name the server's certificate must
// carry whatever address is dialed (for servers found by IP address, such
// as coordinators that advertise their pod IP).
func ClientTLS(f Files, serverName string) (*tls.Config, error) {
	if f.CA == "" {
		return nil, errors.New("secure: client TLS needs the CA certificate that signed the server's")
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("secure: a client certificate needs both its file and its key (got cert %q, key %q)", f.Cert, f.Key)
	}
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: serverName}
	if f.Cert != "" {
		cert, err := loadKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCAPool reads the PEM certificates of a CA file into a pool.
func LoadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secure: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("secure: CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("secure: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}
