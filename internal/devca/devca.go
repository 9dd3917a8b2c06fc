// Package devca makes the throwaway certificates of a local secured Kafka
// cluster (make kafka-up KAFKA_SECURITY=sasl_ssl, internal/kafkalocal) and
// of tests: a CA, server certificates for the brokers and client
// certificates for mTLS principals, all ECDSA P-256, written as PEM with Go's
// crypto/x509 (no openssl needed). Nothing here is fit for a real cluster:
// the CA's key lies beside its certificate.
package devca

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
	"time"
)

// CA is a certificate authority that signs leaf certificates.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertFile is the CA's certificate (PEM): what clients and brokers trust.
	CertFile string
}

// Files are a leaf certificate's PEM files.
type Files struct{ CertFile, KeyFile string }

// Load returns the CA kept in dir (ca.crt, ca.key), making it first when
// there is none; a CA expiring within a day is made anew.
func Load(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if ca, err := read(certFile, keyFile); err == nil && time.Until(ca.cert.NotAfter) > 24*time.Hour {
		return ca, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Switchboard local Kafka CA", Organization: []string{"switchboard-dev"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := write(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	return read(certFile, keyFile)
}

func read(certFile, keyFile string) (*CA, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, errors.New("devca: bad PEM")
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kp.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("devca: the CA key is not ECDSA")
	}
	return &CA{cert: cert, key: key, CertFile: certFile}, nil
}

// Server writes dir/name.crt and dir/name.key: a server certificate for
// the host names and IP addresses in hosts, signed by the CA.
func (ca *CA) Server(dir, name string, hosts ...string) (Files, error) {
	tmpl := ca.leaf(name)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} // brokers are clients of each other
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.sign(dir, name, tmpl)
}

// Client writes dir/name.crt and dir/name.key: a client certificate whose
// subject is CN=cn (Kafka's mTLS principal User:CN=cn), signed by the CA.
func (ca *CA) Client(dir, name, cn string) (Files, error) {
	tmpl := ca.leaf(cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.sign(dir, name, tmpl)
}

func (ca *CA) leaf(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (ca *CA) sign(dir, name string, tmpl *x509.Certificate) (Files, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Files{}, fmt.Errorf("devca: sign %s: %w", name, err)
	}
	f := Files{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	return f, write(f.CertFile, f.KeyFile, der, key)
}

func write(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key) // PKCS #8: what Kafka's PEM key stores read
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
