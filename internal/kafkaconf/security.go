package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms of SASL.Mechanism.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
	MechanismAWSMSKIAM   = "AWS_MSK_IAM"
)

// Mechanisms lists the SASL mechanisms a Config can use.
var Mechanisms = []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512, MechanismOAuthBearer, MechanismAWSMSKIAM}

// Secret is a string that never prints: fmt, slog and JSON all show
// "[redacted]" (an empty secret shows as empty), so a Config logged or
// wrapped into an error whole cannot leak a password.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts %#v too.
func (s Secret) GoString() string { return `kafkaconf.Secret("` + s.String() + `")` }

// LogValue redacts the secret in slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts the secret in JSON and YAML.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TLS is how a client encrypts its connections to the brokers and, with a
// client certificate, authenticates itself (mTLS).
type TLS struct {
	// Enabled turns TLS on. Every other field requires it.
	Enabled bool
	// CAFile is a PEM file of the CAs that sign the brokers' certificates.
	// Empty: the system's roots (managed clusters use public CAs).
	CAFile string
	// CertFile and KeyFile are the client's certificate and private key
	// (PEM), for mTLS; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry. Empty:
	// each broker's host name.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate: encryption without
	// authentication of the broker. Logged as a warning at every start;
	// never for a cluster that matters.
	InsecureSkipVerify bool
}

func (t TLS) given() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// SASL is how a client authenticates with SASL.
type SASL struct {
	// Mechanism is one of Mechanisms (case does not matter); empty: no SASL.
	Mechanism string
	// Username and Password are PLAIN's and SCRAM's credentials. Password
	// or PasswordFile, not both; the file is read again at every
	// authentication, so a rotated password needs no restart.
	Username     string
	Password     Secret
	PasswordFile string
	// OAuthTokenFile holds OAUTHBEARER's token (a JWT); it is read again
	// at every authentication, so a token renewed by a sidecar is picked
	// up by the next connection.
	OAuthTokenFile string
	// AWSCredentials returns AWS_MSK_IAM's credentials. Nil: the standard
	// AWS sources (environment, shared config and credentials files, web
	// identity, ECS and EC2 roles), see awsCredentials.
	AWSCredentials func(context.Context) (aws.Auth, error) `json:"-" yaml:"-"`
}

func (s SASL) mechanism() string { return strings.ToUpper(strings.TrimSpace(s.Mechanism)) }

// Secured reports whether c uses TLS or SASL.
func (c Config) Secured() bool { return c.TLS.Enabled || c.SASL.Mechanism != "" }

// validateSecurity checks the TLS and SASL settings for contradictions and
// gaps, without reading any file. Errors name the flags (each has an
// environment variable of the same name, SWITCHBOARD_KAFKA_...).
func (c Config) validateSecurity() error {
	var errs []error
	t, s := c.TLS, c.SASL
	if !t.Enabled && t.given() {
		errs = append(errs, errors.New("kafka: TLS settings given (--kafka-tls-*) but TLS is off: set --kafka-tls (SWITCHBOARD_KAFKA_TLS=on)"))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, errors.New("kafka: mTLS needs both --kafka-tls-cert-file and --kafka-tls-key-file"))
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		errs = append(errs, errors.New("kafka: --kafka-tls-insecure-skip-verify ignores --kafka-tls-ca-file: give one of them"))
	}
	m := s.mechanism()
	userPass := s.Username != "" || s.Password != "" || s.PasswordFile != ""
	switch m {
	case "":
		if userPass || s.OAuthTokenFile != "" {
			errs = append(errs, errors.New("kafka: SASL credentials given but no --kafka-sasl-mechanism ("+strings.Join(Mechanisms, ", ")+")"))
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if s.Username == "" {
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs --kafka-sasl-username", m))
		}
		switch {
		case s.Password != "" && s.PasswordFile != "":
			errs = append(errs, errors.New("kafka: give --kafka-sasl-password or --kafka-sasl-password-file, not both"))
		case s.Password == "" && s.PasswordFile == "":
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs --kafka-sasl-password or --kafka-sasl-password-file", m))
		}
		if s.OAuthTokenFile != "" {
			errs = append(errs, fmt.Errorf("kafka: --kafka-sasl-oauth-token-file is for OAUTHBEARER, not %s", m))
		}
	case MechanismOAuthBearer:
		if s.OAuthTokenFile == "" {
			errs = append(errs, errors.New("kafka: SASL OAUTHBEARER needs --kafka-sasl-oauth-token-file"))
		}
		if userPass {
			errs = append(errs, errors.New("kafka: SASL OAUTHBEARER takes a token file, not a username or password"))
		}
	case MechanismAWSMSKIAM:
		if userPass || s.OAuthTokenFile != "" {
			errs = append(errs, errors.New("kafka: SASL AWS_MSK_IAM takes its credentials from the standard AWS sources (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles), not a username, password or token file"))
		}
		if !t.Enabled {
			errs = append(errs, errors.New("kafka: SASL AWS_MSK_IAM needs TLS (--kafka-tls): MSK's IAM listener is TLS only"))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka: unknown SASL mechanism %q: want one of %s", s.Mechanism, strings.Join(Mechanisms, ", ")))
	}
	return errors.Join(errs...)
}

// Warnings lists what is allowed but unsafe in c, for the log at start.
func (c Config) Warnings() []string {
	var w []string
	if c.TLS.Enabled && c.TLS.InsecureSkipVerify {
		w = append(w, "INSECURE: --kafka-tls-insecure-skip-verify accepts any broker certificate; anyone in the path can read and change the traffic and take the credentials. Never use it outside a test.")
	}
	if !c.TLS.Enabled {
		switch c.SASL.mechanism() {
		case MechanismPlain:
			w = append(w, "SASL PLAIN without TLS sends the password in clear text: turn on --kafka-tls")
		case MechanismOAuthBearer:
			w = append(w, "SASL OAUTHBEARER without TLS sends the token in clear text: turn on --kafka-tls")
		case MechanismSCRAMSHA256, MechanismSCRAMSHA512:
			w = append(w, "SASL SCRAM without TLS: the password is not sent, but the traffic is readable: turn on --kafka-tls")
		}
	}
	return w
}

// LogAttrs describes the connection for a log line: brokers, TLS and its
// files, the SASL mechanism and user. Never a secret.
func (c Config) LogAttrs() []any {
	attrs := []any{"brokers", strings.Join(c.brokers(), ","), "tls", c.TLS.Enabled}
	if c.TLS.CertFile != "" {
		attrs = append(attrs, "tls_client_cert", c.TLS.CertFile)
	}
	if m := c.SASL.mechanism(); m != "" {
		attrs = append(attrs, "sasl_mechanism", m)
		if c.SASL.Username != "" {
			attrs = append(attrs, "sasl_username", c.SASL.Username)
		}
	}
	return attrs
}

// security is what Load builds from the TLS and SASL settings.
type security struct {
	tls  *tls.Config
	mech sasl.Mechanism
	err  error // a failed build: every dial returns it
}

// Load validates c and reads its files (CA, client certificate and key,
// password and token files, each checked now so a bad file fails the start),
// keeping the TLS configuration and SASL mechanism that Opts hands to every
// client. The daemon calls it once at start; a Config never loaded is loaded
// by Opts on each call.
func (c *Config) Load() error {
	if err := c.Validate(); err != nil {
		return err
	}
	sec := c.build()
	if sec.err != nil {
		return sec.err
	}
	c.sec = sec
	return nil
}

func (c Config) build() *security {
	sec := &security{}
	if c.TLS.Enabled {
		if sec.tls, sec.err = c.TLS.config(); sec.err != nil {
			return sec
		}
	}
	if c.SASL.Mechanism != "" {
		sec.mech, sec.err = c.SASL.build()
	}
	return sec
}

func (t TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // InsecureSkipVerify only when the operator asks, with a warning at start
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s SASL) build() (sasl.Mechanism, error) {
	switch m := s.mechanism(); m {
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if _, err := s.password(); err != nil { // fail the start, not the first connection
			return nil, err
		}
		switch m {
		case MechanismPlain:
			return plain.Plain(func(context.Context) (plain.Auth, error) {
				p, err := s.password()
				return plain.Auth{User: s.Username, Pass: p}, err
			}), nil
		case MechanismSCRAMSHA256:
			return scram.Sha256(func(context.Context) (scram.Auth, error) {
				p, err := s.password()
				return scram.Auth{User: s.Username, Pass: p}, err
			}), nil
		default:
			return scram.Sha512(func(context.Context) (scram.Auth, error) {
				p, err := s.password()
				return scram.Auth{User: s.Username, Pass: p}, err
			}), nil
		}
	case MechanismOAuthBearer:
		if _, err := readSecretFile("OAUTHBEARER token file", s.OAuthTokenFile); err != nil {
			return nil, err
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := readSecretFile("OAUTHBEARER token file", s.OAuthTokenFile)
			return oauth.Auth{Token: tok}, err
		}), nil
	case MechanismAWSMSKIAM:
		creds := s.AWSCredentials
		if creds == nil {
			creds = awsCredentials()
		}
		return aws.ManagedStreamingIAM(creds), nil
	default:
		return nil, fmt.Errorf("kafka: unknown SASL mechanism %q", s.Mechanism)
	}
}

// password returns the password, from the file when one is given (read
// every time: a rotated password needs no restart).
func (s SASL) password() (string, error) {
	if s.PasswordFile != "" {
		return readSecretFile("SASL password file", s.PasswordFile)
	}
	return string(s.Password), nil
}

// readSecretFile reads a one-line secret; the error names the file, never
// its content.
func readSecretFile(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named below once
		}
		return "", fmt.Errorf("kafka: %s %s: %w", what, path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("kafka: %s %s is empty", what, path)
	}
	return v, nil
}

// securityOpts are the client options of c's TLS and SASL settings.
func (c Config) securityOpts() []kgo.Opt {
	if !c.Secured() {
		return nil
	}
	sec := c.sec
	if sec == nil {
		sec = c.build()
	}
	if sec.err != nil {
		err := sec.err
		return []kgo.Opt{kgo.Dialer(func(context.Context, string, string) (net.Conn, error) { return nil, err })}
	}
	var opts []kgo.Opt
	if sec.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(sec.tls.Clone()))
	}
	if sec.mech != nil {
		opts = append(opts, kgo.SASL(sec.mech))
	}
	return opts
}
