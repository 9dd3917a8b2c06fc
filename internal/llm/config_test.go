package llm

import (
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "zero", cfg: Config{}},
		{name: "full", cfg: Config{BaseURL: "https://api.openai.com/v1/", APIKey: "sk-x", MaxConns: 8, ConnectTimeout: time.Second, FirstTokenTimeout: time.Second, TotalTimeout: time.Minute}},
		{name: "no scheme", cfg: Config{BaseURL: "127.0.0.1:8090/v1"}, wantErr: true},
		{name: "ftp", cfg: Config{BaseURL: "ftp://host/v1"}, wantErr: true},
		{name: "no host", cfg: Config{BaseURL: "http:///v1"}, wantErr: true},
		{name: "query", cfg: Config{BaseURL: "http://host/v1?x=1"}, wantErr: true},
		{name: "bad url", cfg: Config{BaseURL: "http://[::1"}, wantErr: true},
		{name: "key with newline", cfg: Config{APIKey: "a\nb"}, wantErr: true},
		{name: "negative conns", cfg: Config{MaxConns: -1}, wantErr: true},
		{name: "negative connect", cfg: Config{ConnectTimeout: -1}, wantErr: true},
		{name: "negative first token", cfg: Config{FirstTokenTimeout: -1}, wantErr: true},
		{name: "negative total", cfg: Config{TotalTimeout: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			c, err := New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Errorf("New() = %v, want error %v", err, tt.wantErr)
			}
			if c != nil {
				c.CloseIdleConnections()
			}
		})
	}
}

func TestNewEndpoint(t *testing.T) {
	tests := []struct{ base, want string }{
		{"", "http://127.0.0.1:8090/v1/chat/completions"},
		{"https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"},
		{"http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"},
	}
	for _, tt := range tests {
		c, err := New(Config{BaseURL: tt.base})
		if err != nil {
			t.Fatal(err)
		}
		if c.endpoint != tt.want {
			t.Errorf("base %q: endpoint = %q, want %q", tt.base, c.endpoint, tt.want)
		}
		if c.transport.MaxConnsPerHost != DefaultMaxConns || c.transport.MaxIdleConnsPerHost != DefaultMaxConns {
			t.Errorf("pool sized %d/%d, want %d", c.transport.MaxConnsPerHost, c.transport.MaxIdleConnsPerHost, DefaultMaxConns)
		}
	}
}
