package devca

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// A CA is made once and kept; its leaves verify against it, a client's
// subject is CN=<cn>, a server's names are its SANs.
func TestCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := Load(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(filepath.Join(dir, "ca"))
	if err != nil || !again.cert.Equal(ca.cert) {
		t.Fatalf("second Load made another CA (%v)", err)
	}
	srv, err := ca.Server(dir, "broker", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Client(dir, "ingress", "ingress")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CertFile)
	pool.AppendCertsFromPEM(pem)
	for _, tc := range []struct {
		f     Files
		usage x509.ExtKeyUsage
		name  string
	}{{srv, x509.ExtKeyUsageServerAuth, "localhost"}, {cli, x509.ExtKeyUsageClientAuth, ""}} {
		pair, err := tls.LoadX509KeyPair(tc.f.CertFile, tc.f.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.name, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
			t.Errorf("%s: %v", tc.f.CertFile, err)
		}
		if tc.usage == x509.ExtKeyUsageClientAuth && leaf.Subject.String() != "CN=ingress" {
			t.Errorf("client subject %s, want CN=ingress", leaf.Subject)
		}
	}
	if fi, err := os.Stat(cli.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}
