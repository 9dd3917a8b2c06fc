package kafkalocal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/devca"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// Security modes of Config.Security.
const (
	SecurityPlaintext = "plaintext"
	SecuritySASLSSL   = "sasl_ssl"
)

// The secured cluster's ports: SASL_SSL client listeners from securePorts,
// mTLS listeners mtlsOffset above them, the nodes' own TLS listener
// internalOffset above, and the KRaft controllers 300 above (29592-29594).
const (
	securePorts    = 29292
	mtlsOffset     = 100
	internalOffset = 200
)

// Principals of the secured cluster. Each has a SCRAM-SHA-512 user, a PLAIN
// user, an OAUTHBEARER token (sub) and a client certificate (CN), all of
// the same name, so it is User:<name> whichever way it authenticates.
// PrincipalAdmin is a super user (it provisions topics and applies ACLs);
// the others have no rights until ACLs give them some (topics
// --apply-acls). The nodes themselves are User:broker, also a super user.
const (
	PrincipalAdmin   = "admin"
	PrincipalIngress = "ingress"
	PrincipalRouter  = "router"
	PrincipalEgress  = "egress"
	PrincipalRedrive = "redrive"
	principalBroker  = "broker"
)

// Principals lists the client principals of the secured cluster.
var Principals = []string{PrincipalAdmin, PrincipalIngress, PrincipalRouter, PrincipalEgress, PrincipalRedrive}

// Ways a client of the secured cluster authenticates (Client, EnvFile).
const (
	AuthSCRAM  = kafkaconf.MechanismSCRAMSHA512 // SASL_SSL listener
	AuthPlain  = kafkaconf.MechanismPlain       // SASL_SSL listener
	AuthOAuth  = kafkaconf.MechanismOAuthBearer // SASL_SSL listener, an unsecured JWT
	AuthMTLS   = "MTLS"                         // mTLS listener, a client certificate
	tokenValid = 365 * 24 * time.Hour
)

// Auths lists the ways of authenticating, each with a client env file.
var Auths = []string{AuthSCRAM, AuthPlain, AuthOAuth, AuthMTLS}

func (c *Cluster) tlsDir() string     { return filepath.Join(c.cfg.Dir, "tls") }
func (c *Cluster) secretsDir() string { return filepath.Join(c.cfg.Dir, "secrets") }

// PasswordFile is principal's SCRAM and PLAIN password file.
func (c *Cluster) PasswordFile(principal string) string {
	return filepath.Join(c.secretsDir(), principal+".password")
}

// TokenFile is principal's OAUTHBEARER token file.
func (c *Cluster) TokenFile(principal string) string {
	return filepath.Join(c.secretsDir(), principal+".token")
}

// CAFile is the CA certificate clients trust.
func (c *Cluster) CAFile() string { return filepath.Join(c.tlsDir(), "ca.crt") }

// makeSecrets makes what the secured nodes and their clients need, keeping
// what exists: the CA, the nodes' certificate, each principal's client
// certificate and password; the OAUTHBEARER tokens are made anew (they
// expire).
func (c *Cluster) makeSecrets() error {
	if err := os.MkdirAll(c.secretsDir(), 0o700); err != nil {
		return err
	}
	ca, err := devca.Load(c.tlsDir())
	if err != nil {
		return fmt.Errorf("kafkalocal: CA: %w", err)
	}
	if _, err := os.Stat(filepath.Join(c.tlsDir(), principalBroker+".crt")); err != nil {
		if _, err := ca.Server(c.tlsDir(), principalBroker, "127.0.0.1", "localhost"); err != nil {
			return err
		}
	}
	for _, p := range Principals {
		if _, err := os.Stat(filepath.Join(c.tlsDir(), p+".crt")); err != nil {
			if _, err := ca.Client(c.tlsDir(), p, p); err != nil {
				return err
			}
		}
		if _, err := os.Stat(c.PasswordFile(p)); err != nil {
			if err := os.WriteFile(c.PasswordFile(p), []byte(rand.Text()+"\n"), 0o600); err != nil {
				return err
			}
		}
		if err := os.WriteFile(c.TokenFile(p), []byte(UnsecuredJWT(p, tokenValid)+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// UnsecuredJWT is an unsigned JWT ("alg":"none") whose sub is principal,
// valid for ttl: what Kafka's default OAUTHBEARER handler
// (OAuthBearerUnsecuredValidatorCallbackHandler) accepts. For local
// clusters and tests only.
func UnsecuredJWT(principal string, ttl time.Duration) string {
	now := time.Now()
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"none"}`))
	claims, _ := json.Marshal(map[string]any{"sub": principal, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}) //nolint:errchkjson // a map of strings and numbers
	return header + "." + enc.EncodeToString(claims) + "."
}

func (c *Cluster) password(principal string) (string, error) {
	b, err := os.ReadFile(c.PasswordFile(principal))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// onePEM reads a PEM file as one line, as Kafka's inline PEM settings take
// it (a properties value cannot hold line breaks).
func onePEM(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var parts []string
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		// Kafka wants white space after each delimiter.
		parts = append(parts, "-----BEGIN "+blk.Type+"----- "+base64.StdEncoding.EncodeToString(blk.Bytes)+" -----END "+blk.Type+"-----")
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("kafkalocal: %s holds no PEM", path)
	}
	return strings.Join(parts, " "), nil
}

// writeSecureProps writes node i's properties for the secured cluster.
func (c *Cluster) writeSecureProps(i int) error {
	var voters []string
	for j, p := range c.cfg.ControllerPorts {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", j+1, p))
	}
	cert, err := onePEM(filepath.Join(c.tlsDir(), principalBroker+".crt"))
	if err != nil {
		return err
	}
	key, err := onePEM(filepath.Join(c.tlsDir(), principalBroker+".key"))
	if err != nil {
		return err
	}
	ca, err := onePEM(c.CAFile())
	if err != nil {
		return err
	}
	var plainUsers []string
	for _, p := range Principals {
		pw, err := c.password(p)
		if err != nil {
			return err
		}
		plainUsers = append(plainUsers, fmt.Sprintf("user_%s=%q", p, pw))
	}
	port := c.cfg.Ports[i]
	props := fmt.Sprintf(`# Written by internal/kafkalocal (make kafka-up KAFKA_SECURITY=sasl_ssl); rewritten at every start.
# Holds the PLAIN users' passwords and the node's private key: keep it private.
process.roles=broker,controller
node.id=%d
controller.quorum.voters=%s
listeners=SASL_SSL://127.0.0.1:%d,MTLS://127.0.0.1:%d,INTERNAL://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d
advertised.listeners=SASL_SSL://127.0.0.1:%d,MTLS://127.0.0.1:%d,INTERNAL://127.0.0.1:%d
listener.security.protocol.map=SASL_SSL:SASL_SSL,MTLS:SSL,INTERNAL:SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
# TLS everywhere, with the throwaway CA of data/kafka/tls. Nodes and mTLS
# clients present certificates; the principal is the certificate's CN.
ssl.keystore.type=PEM
ssl.keystore.certificate.chain=%s
ssl.keystore.key=%s
ssl.truststore.type=PEM
ssl.truststore.certificates=%s
ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
# SASL on the client listener: SCRAM users are stored in the cluster
# (kadm AlterUserSCRAMs at make kafka-up), PLAIN users here, OAUTHBEARER
# takes unsecured JWTs (Kafka's default handler; sub is the principal).
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required %s;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="%s";
# Nothing is allowed that an ACL does not allow, except to the super users.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:%s;User:%s
log.dirs=%s
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
`, i+1, strings.Join(voters, ","),
		port, port+mtlsOffset, port+internalOffset, c.cfg.ControllerPorts[i],
		port, port+mtlsOffset, port+internalOffset,
		cert, key, ca, strings.Join(plainUsers, " "), principalBroker,
		principalBroker, PrincipalAdmin, filepath.Join(c.nodeDir(i), "data"))
	return os.WriteFile(c.propsFile(i), []byte(props), 0o600)
}

// Admin is how the cluster's administrator connects: plaintext for the
// plaintext cluster; for the secured one, the admin's client certificate
// on the mTLS listeners (it needs no SCRAM user, which it creates).
func (c *Cluster) Admin() kafkaconf.Config {
	if !c.Secured() {
		return kafkaconf.Config{Brokers: strings.Split(c.Brokers(), ",")}
	}
	return c.Client(PrincipalAdmin, AuthMTLS)
}

// Client is how principal connects to the secured cluster with auth (one
// of Auths).
func (c *Cluster) Client(principal, auth string) kafkaconf.Config {
	cfg := kafkaconf.Config{Brokers: strings.Split(c.Brokers(), ","), TLS: kafkaconf.TLS{Enabled: true, CAFile: c.CAFile()}}
	switch auth {
	case AuthMTLS:
		cfg.Brokers = strings.Split(joinPorts(c.cfg.Ports, mtlsOffset), ",")
		cfg.TLS.CertFile, cfg.TLS.KeyFile = filepath.Join(c.tlsDir(), principal+".crt"), filepath.Join(c.tlsDir(), principal+".key")
	case AuthOAuth:
		cfg.SASL = kafkaconf.SASL{Mechanism: auth, OAuthTokenFile: c.TokenFile(principal)}
	default:
		cfg.SASL = kafkaconf.SASL{Mechanism: auth, Username: principal, PasswordFile: c.PasswordFile(principal)}
	}
	return cfg
}

// Env is Client as the environment variables every binary reads.
func (c *Cluster) Env(principal, auth string) []string {
	k := c.Client(principal, auth)
	env := []string{"SWITCHBOARD_BROKERS=" + strings.Join(k.Brokers, ","), "SWITCHBOARD_KAFKA_TLS=on", "SWITCHBOARD_KAFKA_TLS_CA_FILE=" + k.TLS.CAFile}
	if k.TLS.CertFile != "" {
		env = append(env, "SWITCHBOARD_KAFKA_TLS_CERT_FILE="+k.TLS.CertFile, "SWITCHBOARD_KAFKA_TLS_KEY_FILE="+k.TLS.KeyFile)
	}
	if s := k.SASL; s.Mechanism != "" {
		env = append(env, "SWITCHBOARD_KAFKA_SASL_MECHANISM="+s.Mechanism)
		if s.Username != "" {
			env = append(env, "SWITCHBOARD_KAFKA_SASL_USERNAME="+s.Username, "SWITCHBOARD_KAFKA_SASL_PASSWORD_FILE="+s.PasswordFile)
		}
		if s.OAuthTokenFile != "" {
			env = append(env, "SWITCHBOARD_KAFKA_SASL_OAUTH_TOKEN_FILE="+s.OAuthTokenFile)
		}
	}
	return env
}

// EnvFile is the client env file of principal and auth: Dir/<principal>.env
// for SCRAM-SHA-512, Dir/<principal>-plain.env, -oauth.env and -mtls.env
// for the others.
func (c *Cluster) EnvFile(principal, auth string) string {
	suffix := map[string]string{AuthSCRAM: "", AuthPlain: "-plain", AuthOAuth: "-oauth", AuthMTLS: "-mtls"}[auth]
	return filepath.Join(c.cfg.Dir, principal+suffix+".env")
}

// setupPrincipals creates (or updates) every principal's SCRAM-SHA-512 and
// SCRAM-SHA-256 credentials with kadm, as the admin, then writes the
// client env files.
func (c *Cluster) setupPrincipals(ctx context.Context) error {
	cl, err := kgo.NewClient(c.Admin().Opts(nil)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// A user may appear once per request: one request per mechanism.
	for _, m := range []kadm.ScramMechanism{kadm.ScramSha512, kadm.ScramSha256} {
		var ups []kadm.UpsertSCRAM
		for _, p := range Principals {
			pw, err := c.password(p)
			if err != nil {
				return err
			}
			ups = append(ups, kadm.UpsertSCRAM{User: p, Mechanism: m, Iterations: 4096, Password: pw})
		}
		res, err := kadm.NewClient(cl).AlterUserSCRAMs(ctx, nil, ups)
		if err != nil {
			return fmt.Errorf("kafkalocal: create SCRAM users: %w", err)
		}
		var errs []error
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("SCRAM user %s: %w", r.User, r.Err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("kafkalocal: %w", err)
		}
	}
	for _, p := range Principals {
		for _, a := range Auths {
			body := fmt.Sprintf("# User:%s on the secured local cluster (make kafka-up KAFKA_SECURITY=sasl_ssl), %s.\n# Use: set -a; . %s; set +a\n",
				p, a, c.EnvFile(p, a))
			for _, kv := range c.Env(p, a) {
				body += kv + "\n"
			}
			if err := os.WriteFile(c.EnvFile(p, a), []byte(body), 0o600); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(c.cfg.Out, "SCRAM users %s; client env files %s\n", strings.Join(Principals, ", "), filepath.Join(c.cfg.Dir, "<principal>[-plain|-oauth|-mtls].env"))
	return nil
}
