package kafkaconf

import (
	"context"
	"fmt"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl/aws"
)

// awsCredentials returns AWS_MSK_IAM's credential callback, reading the
// standard AWS sources in the SDK's order: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared
// config and credentials files (AWS_PROFILE, SSO), web identity (EKS IRSA),
// the ECS task role and the EC2 instance role. franz-go signs each
// authentication with them (the region comes from the broker's host name,
// else AWS_REGION). The SDK's configuration is loaded at the first
// authentication; its credentials cache renews temporary credentials.
func awsCredentials() func(context.Context) (aws.Auth, error) {
	var (
		mu    sync.Mutex
		creds awssdk.CredentialsProvider
	)
	return func(ctx context.Context) (aws.Auth, error) {
		mu.Lock()
		if creds == nil {
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				mu.Unlock()
				return aws.Auth{}, fmt.Errorf("kafka: AWS configuration: %w", err)
			}
			creds = cfg.Credentials
		}
		p := creds
		mu.Unlock()
		c, err := p.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("kafka: AWS credentials: %w", err)
		}
		return aws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
	}
}
