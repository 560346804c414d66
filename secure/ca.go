package secure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CA is a certificate authority kept in memory: it signs the leaf
// certificates of a development or test cluster. Keys are ECDSA P-256.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// NewCA makes a self-signed CA named name, valid from an hour ago (clock
// skew) for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secure: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"dpcnn"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("secure: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("secure: CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, der: der}, nil
}

// CertPEM is the CA's certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// KeyPEM is the CA's private key, PEM-encoded (PKCS #8).
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.key) }

// Leaf describes a certificate for CA.Issue to sign.
type Leaf struct {
	// Name is the subject's common name (for people and logs).
	Name string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for; localhost, 127.0.0.1 and ::1 are added, so that every
	// certificate also works on one machine, unless OnlyHosts.
	Hosts []string
	// OnlyHosts leaves the loopback names out: for a certificate that must
	// not pass for a server at a loopback address (a worker's, whose
	// reduce service is checked by one name only).
	OnlyHosts bool
	// Server and Client say which ends of a TLS connection the certificate
	// may serve (extended key usages serverAuth and clientAuth).
	Server, Client bool
	// ValidFor is the lifetime from now.
	ValidFor time.Duration
}

// Issue makes a key and a certificate for l signed by the CA and returns
// both PEM-encoded.
func (ca *CA) Issue(l Leaf) (certPEM, keyPEMBytes []byte, err error) {
	if !l.Server && !l.Client {
		return nil, nil, fmt.Errorf("secure: certificate %q: neither for a server nor for a client", l.Name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("secure: key of %q: %w", l.Name, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.Name, Organization: []string{"dpcnn"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(l.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter // no leaf outlives its CA
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	hosts := l.Hosts
	if !l.OnlyHosts {
		hosts = withLoopback(hosts)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("secure: certificate %q: %w", l.Name, err)
	}
	k, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k, nil
}

// CheckHosts refuses host names a certificate cannot carry: empty ones,
// ones with a port or a scheme, spaces.
func CheckHosts(hosts []string) error {
	for _, h := range hosts {
		switch {
		case h == "":
			return errors.New("secure: an empty host name")
		case net.ParseIP(h) != nil:
		case strings.ContainsAny(h, ":/ \t@"):
			return fmt.Errorf("secure: host %q: a DNS name or an IP address without port or scheme, please", h)
		case strings.HasPrefix(h, "*.") && !strings.Contains(h[2:], "*"):
		case strings.Contains(h, "*"):
			return fmt.Errorf("secure: host %q: a wildcard may only be the whole first label (*.example)", h)
		}
	}
	return nil
}

// withLoopback adds localhost, 127.0.0.1 and ::1 to hosts, dropping
// repeats.
func withLoopback(hosts []string) []string {
	out := make([]string, 0, len(hosts)+3)
	for _, h := range append(slices.Clone(hosts), "localhost", "127.0.0.1", "::1") {
		if h = strings.TrimSpace(h); h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("secure: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("secure: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// The files of a development set (DevelopmentSet), in the folder it is
// written to.
const (
	FileCA              = "ca.crt"
	FileCAKey           = "ca.key"
	FileCoordinatorCert = "coordinator.crt"
	FileCoordinatorKey  = "coordinator.key"
	FileEtcdCert        = "etcd.crt"
	FileEtcdKey         = "etcd.key"
	FileWorkerCert      = "worker.crt"
	FileWorkerKey       = "worker.key"
	FileCnnctlCert      = "cnnctl.crt"
	FileCnnctlKey       = "cnnctl.key"
	FileToken           = "token"
)

// WorkerServerName is the name a worker's certificate carries as a
// server: workers reach each other's reduce service at addresses no
// certificate could name in advance (pod IPs), so they check this name
// instead, which only the cluster's CA issues.
const WorkerServerName = "worker.dpcnn.internal"

// DevelopmentSet is every file a cluster needs for mutual TLS and token
// authentication, made by NewDevelopmentSet:
//
//	ca.crt, ca.key              the CA (keep ca.key away from the cluster)
//	coordinator.crt/.key        coordinators: gRPC server, and etcd client
//	etcd.crt/.key               etcd: client and peer server
//	worker.crt/.key             workers: gRPC and etcd client, and the
//	                            reduce service's server (WorkerServerName)
//	cnnctl.crt/.key             cnnctl: client (optional with a token)
//	token                       the bearer token for cnnctl's calls
//
// Keys and the token are written with mode 0600, certificates 0644.
type DevelopmentSet struct {
	// Files maps a file name to its content.
	Files map[string][]byte
	CA    *CA
}

// NewDevelopmentSet makes a CA and the certificates of a cluster whose
// coordinators and etcd members are reached at hosts (DNS names or IPs;
// localhost and the loopback IPs are always included), valid for
// validFor, and a random token.
func NewDevelopmentSet(hosts []string, validFor time.Duration) (*DevelopmentSet, error) {
	if err := CheckHosts(hosts); err != nil {
		return nil, err
	}
	ca, err := NewCA("dpcnn development CA", validFor)
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	set := &DevelopmentSet{CA: ca, Files: map[string][]byte{FileCA: ca.CertPEM(), FileCAKey: caKey}}
	for _, l := range []struct {
		cert, key string
		leaf      Leaf
	}{
		{FileCoordinatorCert, FileCoordinatorKey, Leaf{Name: "dpcnn coordinator", Hosts: hosts, Server: true, Client: true}},
		{FileEtcdCert, FileEtcdKey, Leaf{Name: "dpcnn etcd", Hosts: hosts, Server: true, Client: true}},
		{FileWorkerCert, FileWorkerKey, Leaf{Name: "dpcnn worker", Hosts: []string{WorkerServerName}, OnlyHosts: true, Server: true, Client: true}},
		{FileCnnctlCert, FileCnnctlKey, Leaf{Name: "dpcnn cnnctl", Client: true}},
	} {
		l.leaf.ValidFor = validFor
		c, k, err := ca.Issue(l.leaf)
		if err != nil {
			return nil, err
		}
		set.Files[l.cert], set.Files[l.key] = c, k
	}
	token, err := NewToken()
	if err != nil {
		return nil, err
	}
	set.Files[FileToken] = []byte(token + "\n")
	return set, nil
}

// secret says whether a file of a development set must stay private.
func secret(name string) bool { return strings.HasSuffix(name, ".key") || name == FileToken }

// Write writes the set into dir (made if missing, mode 0700 then). It
// refuses, before writing anything, when one of the files exists, unless
// overwrite. Each file is written whole under a temporary name and renamed.
func (s *DevelopmentSet) Write(dir string, overwrite bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	names := s.Names()
	if !overwrite {
		for _, name := range names {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				return fmt.Errorf("secure: %s exists: not overwritten", filepath.Join(dir, name))
			}
		}
	}
	for _, name := range names {
		mode := os.FileMode(0o644)
		if secret(name) {
			mode = 0o600
		}
		if err := writeAtomic(filepath.Join(dir, name), s.Files[name], mode); err != nil {
			return err
		}
	}
	return nil
}

// Names lists the set's files, sorted.
func (s *DevelopmentSet) Names() []string {
	names := make([]string, 0, len(s.Files))
	for name := range s.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, there is nothing left to remove
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("secure: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("secure: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	return nil
}
