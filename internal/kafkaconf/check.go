package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrConnection marks a Kafka connection that retrying cannot fix: a
// refused password or token, a mechanism the listener does not offer, an
// untrusted or misnamed broker certificate, a client certificate the
// broker refused, or TLS spoken to a listener without it.
var ErrConnection = errors.New("kafka connection refused")

// Check connects to the cluster once, within wait, and returns an error
// wrapping ErrConnection when the cluster refused the client for a reason
// no retry fixes (the error says which setting to look at). A cluster that
// does not answer within wait is no error here: the clients keep trying, as
// they do for a cluster that goes away later. Binaries call it at start
// (internal/daemon), so a wrong password ends the start with a clear
// message instead of an endless reconnection loop.
func (c Config) Check(ctx context.Context, wait time.Duration, logger *slog.Logger) error {
	cl, err := kgo.NewClient(append(c.Opts(nil), kgo.RequestRetries(0), kgo.DialTimeout(3*time.Second))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if fatal := c.classify(err); fatal != nil {
			return fatal
		}
		select {
		case <-ctx.Done():
			if logger != nil {
				logger.Warn("kafka does not answer yet; the clients keep trying", append(c.LogAttrs(), "err", err)...)
			}
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// classify returns the error, explained, when err is one no retry fixes.
func (c Config) classify(err error) error {
	m := c.SASL.mechanism()
	who := ""
	if c.SASL.Username != "" {
		who = fmt.Sprintf(" as user %q", c.SASL.Username)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		alert     tls.AlertError
		op        *net.OpError
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("%w: SASL %s authentication%s failed: wrong username, password or token (--kafka-sasl-*): %w", ErrConnection, m, who, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("%w: the listener does not offer SASL %s (--kafka-sasl-mechanism): %w", ErrConnection, m, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("%w: SASL handshake failed; does the listener expect SASL? (--kafka-sasl-mechanism): %w", ErrConnection, err)
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		return fmt.Errorf("%w: the broker's TLS certificate is not trusted (--kafka-tls-ca-file): %w", ErrConnection, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: the broker's TLS certificate is for another name (--kafka-tls-server-name): %w", ErrConnection, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: the broker's TLS certificate is invalid: %w", ErrConnection, err)
	case errors.As(err, &header):
		return fmt.Errorf("%w: TLS spoken to a listener without TLS (turn off --kafka-tls, or use the TLS listener's port): %w", ErrConnection, err)
	case errors.As(err, &alert), errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the broker
		return fmt.Errorf("%w: the broker refused the TLS handshake (a client certificate it does not trust or none: --kafka-tls-cert-file): %w", ErrConnection, err)
	}
	return nil
}
