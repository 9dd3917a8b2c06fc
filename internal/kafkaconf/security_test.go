package kafkaconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"

	"github.com/switchboard-llm/switchboard/internal/devca"
)

const testPassword = "s3cret-Pa55word-for-tests"

// TestValidateSecurity: every bad combination of TLS and SASL settings is
// refused with an error naming the setting; the good ones pass.
func TestValidateSecurity(t *testing.T) {
	tlsOn := TLS{Enabled: true}
	for _, tc := range []struct {
		name string
		tls  TLS
		sasl SASL
		want string // "" = valid
	}{
		{"plaintext", TLS{}, SASL{}, ""},
		{"tls", tlsOn, SASL{}, ""},
		{"tls with ca and server name", TLS{Enabled: true, CAFile: "ca.crt", ServerName: "kafka"}, SASL{}, ""},
		{"mtls", TLS{Enabled: true, CertFile: "c.crt", KeyFile: "c.key"}, SASL{}, ""},
		{"cert without key", TLS{Enabled: true, CertFile: "c.crt"}, SASL{}, "needs both --kafka-tls-cert-file and --kafka-tls-key-file"},
		{"key without cert", TLS{Enabled: true, KeyFile: "c.key"}, SASL{}, "needs both"},
		{"tls file with tls off", TLS{CAFile: "ca.crt"}, SASL{}, "TLS is off"},
		{"insecure with tls off", TLS{InsecureSkipVerify: true}, SASL{}, "TLS is off"},
		{"insecure with ca", TLS{Enabled: true, InsecureSkipVerify: true, CAFile: "ca.crt"}, SASL{}, "ignores --kafka-tls-ca-file"},
		{"unknown mechanism", tlsOn, SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}, `unknown SASL mechanism "GSSAPI"`},
		{"mechanism in lower case", tlsOn, SASL{Mechanism: "scram-sha-512", Username: "u", Password: "p"}, ""},
		{"plain", tlsOn, SASL{Mechanism: "PLAIN", Username: "u", Password: "p"}, ""},
		{"plain over plaintext (warned, allowed)", TLS{}, SASL{Mechanism: "PLAIN", Username: "u", Password: "p"}, ""},
		{"scram without password", tlsOn, SASL{Mechanism: "SCRAM-SHA-512", Username: "u"}, "needs --kafka-sasl-password or --kafka-sasl-password-file"},
		{"scram without username", tlsOn, SASL{Mechanism: "SCRAM-SHA-256", Password: "p"}, "needs --kafka-sasl-username"},
		{"scram with password file", tlsOn, SASL{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordFile: "pw"}, ""},
		{"password and password file", tlsOn, SASL{Mechanism: "PLAIN", Username: "u", Password: "p", PasswordFile: "pw"}, "not both"},
		{"scram with token file", tlsOn, SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p", OAuthTokenFile: "t"}, "is for OAUTHBEARER"},
		{"oauth", tlsOn, SASL{Mechanism: "OAUTHBEARER", OAuthTokenFile: "t"}, ""},
		{"oauth without token file", tlsOn, SASL{Mechanism: "OAUTHBEARER"}, "needs --kafka-sasl-oauth-token-file"},
		{"oauth with password", tlsOn, SASL{Mechanism: "OAUTHBEARER", OAuthTokenFile: "t", Username: "u", Password: "p"}, "not a username or password"},
		{"msk iam", tlsOn, SASL{Mechanism: "AWS_MSK_IAM"}, ""},
		{"msk iam without tls", TLS{}, SASL{Mechanism: "AWS_MSK_IAM"}, "needs TLS"},
		{"msk iam with password", tlsOn, SASL{Mechanism: "AWS_MSK_IAM", Username: "u", Password: "p"}, "standard AWS sources"},
		{"credentials without mechanism", tlsOn, SASL{Username: "u", Password: "p"}, "no --kafka-sasl-mechanism"},
		{"token file without mechanism", tlsOn, SASL{OAuthTokenFile: "t"}, "no --kafka-sasl-mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Brokers: []string{"k:9093"}, TLS: tc.tls, SASL: tc.sasl}.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "p\"") {
				t.Errorf("error shows a password: %v", err)
			}
		})
	}
}

// TestWarnings: skipping verification, and SASL without TLS, are warned
// about; a proper TLS setup is not.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"insecure", Config{TLS: TLS{Enabled: true, InsecureSkipVerify: true}}, "INSECURE"},
		{"plain without tls", Config{SASL: SASL{Mechanism: "PLAIN"}}, "clear text"},
		{"oauth without tls", Config{SASL: SASL{Mechanism: "OAUTHBEARER"}}, "clear text"},
		{"scram without tls", Config{SASL: SASL{Mechanism: "SCRAM-SHA-512"}}, "readable"},
		{"sasl_ssl", Config{TLS: TLS{Enabled: true}, SASL: SASL{Mechanism: "PLAIN"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(tc.cfg.Warnings(), "\n")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("Warnings() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSecretNeverPrints: a Config holding a password, printed every way a
// program might (fmt verbs, slog text and JSON, encoding/json), never shows
// it; LogAttrs names the user, not the password.
func TestSecretNeverPrints(t *testing.T) {
	cfg := Config{Brokers: []string{"k:9093"}, TLS: TLS{Enabled: true},
		SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "ingress", Password: testPassword}}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s\n", cfg, cfg, cfg, cfg.SASL.Password)
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "sasl", cfg.SASL, "password", cfg.SASL.Password)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "password", cfg.SASL.Password)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("kafka connection", cfg.LogAttrs()...)
	b, err := json.Marshal(cfg.SASL)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(b)
	if strings.Contains(out.String(), testPassword) {
		t.Errorf("the password was printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") || !strings.Contains(out.String(), `"sasl_username":"ingress"`) {
		t.Errorf("want [redacted] and the user name in:\n%s", out.String())
	}
	if got := Secret("").String(); got != "" {
		t.Errorf("empty Secret prints %q, want empty", got)
	}
}

// TestLoad: files are read at Load, so a missing or bad file fails the
// start with an error naming the file (and never its content).
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.Load(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client(dir, "client", "switchboard-test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := devca.Load(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherClient, err := other.Client(dir, "other-client", "x")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pwFile := write("password", testPassword+"\n")
	empty := write("empty", "\n")
	notPEM := write("not-pem", "hello")
	token := write("token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.\n")
	missing := filepath.Join(dir, "missing")
	tlsOn := TLS{Enabled: true, CAFile: ca.CertFile}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"tls with ca", Config{TLS: tlsOn}, ""},
		{"mtls", Config{TLS: TLS{Enabled: true, CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile}}, ""},
		{"ca file missing", Config{TLS: TLS{Enabled: true, CAFile: missing}}, "TLS CA file"},
		{"ca file not pem", Config{TLS: TLS{Enabled: true, CAFile: notPEM}}, "holds no PEM certificate"},
		{"cert and key of different pairs", Config{TLS: TLS{Enabled: true, CertFile: client.CertFile, KeyFile: otherClient.KeyFile}}, "TLS client certificate"},
		{"password file", Config{TLS: tlsOn, SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordFile: pwFile}}, ""},
		{"password file missing", Config{TLS: tlsOn, SASL: SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: missing}}, "SASL password file " + missing},
		{"password file empty", Config{TLS: tlsOn, SASL: SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: empty}}, "is empty"},
		{"token file", Config{TLS: tlsOn, SASL: SASL{Mechanism: "OAUTHBEARER", OAuthTokenFile: token}}, ""},
		{"token file missing", Config{TLS: tlsOn, SASL: SASL{Mechanism: "OAUTHBEARER", OAuthTokenFile: missing}}, "OAUTHBEARER token file"},
		{"msk iam", Config{TLS: tlsOn, SASL: SASL{Mechanism: "AWS_MSK_IAM"}}, ""},
		{"invalid", Config{TLS: TLS{CertFile: "x"}}, "TLS is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			err := cfg.Load()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Load() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Load() = %v, want an error containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), testPassword) {
				t.Errorf("error shows the password: %v", err)
			}
			if err == nil && len(cfg.Opts(nil)) < 4 {
				t.Errorf("Opts() has no TLS or SASL option")
			}
		})
	}
}

// TestTokenFileReread: the OAUTHBEARER token and the password are read
// from their files at every authentication, so a renewed token or a
// rotated password is used by the next connection without a restart.
func TestTokenFileReread(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := SASL{Mechanism: "OAUTHBEARER", OAuthTokenFile: tok}
	m, err := s.build()
	if err != nil {
		t.Fatal(err)
	}
	first := authMessage(t, m)
	if err := os.WriteFile(tok, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := authMessage(t, m)
	if !strings.Contains(first, "auth=Bearer first") || !strings.Contains(second, "auth=Bearer second") {
		t.Errorf("authentications sent %q then %q, want the token of the file at each time", first, second)
	}
}

func authMessage(t *testing.T, m sasl.Mechanism) string {
	t.Helper()
	_, msg, err := m.Authenticate(t.Context(), "k:9093")
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// TestMSKIAMSigning: AWS_MSK_IAM authenticates with a request signed by
// franz-go's pkg/sasl/aws from the credentials of the callback (here fixed
// ones; by default the standard AWS sources), for the region of the broker's
// host name. Only the signing is tested: there is no MSK cluster here.
func TestMSKIAMSigning(t *testing.T) {
	s := SASL{Mechanism: "AWS_MSK_IAM", AWSCredentials: func(context.Context) (aws.Auth, error) {
		return aws.Auth{AccessKey: "AKIDEXAMPLE", SecretKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-token"}, nil
	}}
	m, err := s.build()
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := m.Authenticate(t.Context(), "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	var req map[string]string
	if err := json.Unmarshal(msg, &req); err != nil {
		t.Fatalf("auth message is not JSON: %v\n%s", err, msg)
	}
	for k, want := range map[string]string{
		"action":               "kafka-cluster:Connect",
		"host":                 "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com",
		"x-amz-algorithm":      "AWS4-HMAC-SHA256",
		"x-amz-security-token": "session-token",
	} {
		if req[k] != want {
			t.Errorf("%s = %q, want %q", k, req[k], want)
		}
	}
	if !strings.HasPrefix(req["x-amz-credential"], "AKIDEXAMPLE/") || !strings.Contains(req["x-amz-credential"], "/eu-west-1/kafka-cluster/aws4_request") {
		t.Errorf("x-amz-credential = %q, want AKIDEXAMPLE/<date>/eu-west-1/kafka-cluster/aws4_request", req["x-amz-credential"])
	}
	if len(req["x-amz-signature"]) != 64 {
		t.Errorf("x-amz-signature = %q, want 64 hex digits", req["x-amz-signature"])
	}
	if strings.Contains(string(msg), "wJalrXUtnFEMI") {
		t.Error("the secret key is in the authentication message")
	}
}

// TestCheck: the right password passes; a cluster that does not answer is
// no error (the clients keep trying). kfake closes the connection on a
// wrong password instead of answering SASL_AUTHENTICATION_FAILED as Kafka
// does, so the refused password is tested on Apache Kafka
// (e2e TestRealKafkaSecured) and its classification here.
func TestCheck(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "ingress", testPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := Config{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "ingress", Password: testPassword}}
	if err := cfg.Check(t.Context(), 30*time.Second, nil); err != nil {
		t.Errorf("right password: Check = %v", err)
	}
	cfg.Brokers = []string{"127.0.0.1:1"}
	if err := cfg.Check(t.Context(), 300*time.Millisecond, nil); err != nil {
		t.Errorf("no cluster: Check = %v, want nil", err)
	}
}

// TestClassify: the errors no retry fixes are ErrConnection, with a hint
// naming the setting; others (a refused dial) are not.
func TestClassify(t *testing.T) {
	cfg := Config{SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "ingress", Password: testPassword}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("sasl: %w", kerr.SaslAuthenticationFailed), `SASL SCRAM-SHA-512 authentication as user "ingress" failed`},
		{kerr.UnsupportedSaslMechanism, "does not offer SASL SCRAM-SHA-512"},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "--kafka-tls-ca-file"},
		{x509.HostnameError{Certificate: &x509.Certificate{}, Host: "k"}, "--kafka-tls-server-name"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "listener without TLS"},
		{tls.AlertError(42), "--kafka-tls-cert-file"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, "--kafka-tls-cert-file"},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), ""},
	} {
		got := cfg.classify(tc.err)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("classify(%v) = %v, want nil", tc.err, got)
		case tc.want != "" && (!errors.Is(got, ErrConnection) || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("classify(%v) = %v, want ErrConnection with %q", tc.err, got, tc.want)
		}
		if got != nil && strings.Contains(got.Error(), testPassword) {
			t.Errorf("shows the password: %v", got)
		}
	}
}

// TestAWSCredentialsFromEnvironment: with no callback, AWS_MSK_IAM takes
// the standard AWS sources; the environment comes first.
func TestAWSCredentialsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
	t.Setenv("AWS_SESSION_TOKEN", "token-from-env")
	got, err := awsCredentials()(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessKey != "AKIDENV" || got.SecretKey != "secret-from-env" || got.SessionToken != "token-from-env" {
		t.Errorf("credentials %+v, want the environment's", got)
	}
}
