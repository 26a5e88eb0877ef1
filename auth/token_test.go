package auth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/sessiongate/sessiongate/auth"
)

func TestHashToken(t *testing.T) {
	tests := []struct {
		name, token, want string
	}{
		// Computed independently with
		// printf '%s' TOKEN | sha256sum | cut -d' ' -f1 | xxd -r -p | base64
		{"seed example token", "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6", "bJCsKEnxCJdAoBz87DTXSNNL2PueE5TPxazkhm8L44A="},
		{"empty", "", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.HashToken(tt.token); got != tt.want {
				t.Errorf("HashToken(%q) = %q, want %q", tt.token, got, tt.want)
			}
			if got := string(auth.AppendHashedToken([]byte("x"), []byte(tt.token))); got != "x"+tt.want {
				t.Errorf("AppendHashedToken(\"x\", %q) = %q, want %q", tt.token, got, "x"+tt.want)
			}
		})
	}
}

func TestHashTokenMatchesMeteorForAnyBytes(t *testing.T) {
	// Non-ASCII and non-UTF-8 tokens are hashed as their raw bytes.
	for _, tok := range []string{"é", "\xff\xfe", "a b", "tok\r\n", string(make([]byte, 4096))} {
		sum := sha256.Sum256([]byte(tok))
		want := base64.StdEncoding.EncodeToString(sum[:])
		got := auth.HashToken(tok)
		if got != want || len(got) != auth.HashedTokenLen {
			t.Errorf("HashToken(%q) = %q (len %d), want %q (len %d)", tok, got, len(got), want, auth.HashedTokenLen)
		}
	}
}

func TestAppendHashedTokenDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, auth.HashedTokenLen)
	tok := []byte("4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6")
	if n := testing.AllocsPerRun(100, func() { buf = auth.AppendHashedToken(buf[:0], tok) }); n != 0 {
		t.Errorf("AppendHashedToken allocates %v times, want 0", n)
	}
}

func ExampleHashToken() {
	// The token from the X-Auth-Token header of Rocket.Chat's documented example call.
	fmt.Println(auth.HashToken("4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"))
	// Output: bJCsKEnxCJdAoBz87DTXSNNL2PueE5TPxazkhm8L44A=
}

func BenchmarkAppendHashedToken(b *testing.B) {
	buf := make([]byte, 0, auth.HashedTokenLen)
	tok := []byte("4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6")
	b.ReportAllocs()
	for b.Loop() {
		buf = auth.AppendHashedToken(buf[:0], tok)
	}
}
