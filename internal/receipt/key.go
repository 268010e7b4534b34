package receipt

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadKeyFile reads the signing key COUNTERSIGN_RECEIPT_KEY names: a PEM
// PKCS#8 Ed25519 private key (`openssl genpkey -algorithm ed25519`), or the
// 32-byte seed in hex (`openssl rand -hex 32`). Errors never quote the
// file's contents.
func LoadKeyFile(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	key, err := ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("receipt key %s: %w", path, err)
	}
	return key, nil
}

// ParseKey reads a private key in one of LoadKeyFile's forms.
func ParseKey(raw []byte) (ed25519.PrivateKey, error) {
	if block, _ := pem.Decode(raw); block != nil {
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY (PKCS#8)", block.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("not a PKCS#8 private key")
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T, want an Ed25519 key", k)
		}
		return ed, nil
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("neither a PEM private key nor a 32-byte seed in hex")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
