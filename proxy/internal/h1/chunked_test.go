package h1

import (
	"bytes"
	"io"
	"testing"
)

// decodeChunked runs a ChunkDecoder over in, fed in pieces of at most step
// bytes, and returns the data and whether the body ended.
func decodeChunked(in []byte, step int) ([]byte, bool, error) {
	var d ChunkDecoder
	var out []byte
	for off := 0; off < len(in) && !d.Finished(); {
		piece := in[off:min(off+step, len(in))]
		for len(piece) > 0 && !d.Finished() {
			n, err := d.Frame(piece)
			if err != nil {
				return out, false, err
			}
			m := int(min(int64(len(piece)-n), d.DataLeft()))
			d.Took(m)
			out = append(out, piece[n:n+m]...)
			if n+m == 0 {
				panic("ChunkDecoder made no progress")
			}
			piece = piece[n+m:]
			off += n + m
		}
	}
	return out, d.Finished(), nil
}

// chunkSizeLine reads one chunk-size line with a ChunkDecoder, as the
// fasthttp path's reader did before both paths shared it: the size, or an
// error for a malformed or unfinished line.
func chunkSizeLine(in []byte) (int64, error) {
	var d ChunkDecoder
	_, err := d.Frame(in)
	switch {
	case err != nil:
		return 0, err
	case d.state == cdData:
		return d.left, nil
	case d.state == cdTrailer || d.state == cdDone:
		return 0, nil // the last chunk
	}
	return 0, io.ErrUnexpectedEOF
}

func TestChunkDecoder(t *testing.T) {
	for _, tt := range []struct {
		name, in, data string
		ended, bad     bool
	}{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", "hello", true, false},
		{"two chunks, hex size", "3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n", "abc0123456789", true, false},
		{"extensions", "3;name=value\r\nabc\r\n0;x\r\n\r\n", "abc", true, false},
		{"trailers dropped", "2\r\nhi\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n", "hi", true, false},
		{"upper-case hex", "1F\r\n" + string(bytes.Repeat([]byte("x"), 31)) + "\r\n0\r\n\r\n", string(bytes.Repeat([]byte("x"), 31)), true, false},
		{"not ended", "5\r\nhello\r\n", "hello", false, false},
		{"data longer than size", "2\r\nhello\r\n0\r\n\r\n", "he", false, true},
		{"no size", "\r\nhello\r\n", "", false, true},
		{"size overflow", "1000000000000000\r\n", "", false, true},
		{"bare LF after a size", "0\n\r\n", "", false, true},
		// Chunk extensions, RFC 9112 §7.1.1: token or quoted-string values.
		{"extension, quoted value", "3;a=\"x;\\\"y\"\r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"extensions with BWS", "3;a = b;  c\r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"whitespace before ;", "3 ;a\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"whitespace between extensions", "3;a=b ;c\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"whitespace after a value", "3;a=b \r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"whitespace before CRLF", "3 \r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"extension, empty quoted value", "3;a=\"\"\r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"extension, obs-text in quotes", "3;a=\"\xe9\"\r\nabc\r\n0\r\n\r\n", "abc", true, false},
		{"extension, unterminated quoted-string", "3;a=\"abc\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, quoted-string over CRLF", "3;a=\"\r\n\"\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, quoted-pair escaping CR", "3;a=\"\\\r\n\"\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, CTL in quotes", "3;a=\"\x00\"\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, no name", "3;=b\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, no value", "3;a=\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, bad name byte", "3;a@b\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, text after quoted value", "3;a=\"b\"c\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"garbage after size", "3x\r\nabc\r\n0\r\n\r\n", "", false, true},
		{"extension, bare CR", "3;a\rb\r\nabc\r\n0\r\n\r\n", "", false, true},
		// Trailer sections: field lines ended by CRLF, as in a head.
		{"trailer, empty value", "1\r\na\r\n0\r\nX-A:\r\n\r\n", "a", true, false},
		{"trailer, bare LF ending the body", "1\r\na\r\n0\r\n\n", "", false, true},
		{"trailer, bare LF ending a field", "1\r\na\r\n0\r\nX: a\n\r\n", "", false, true},
		{"trailer, bare CR in a value", "1\r\na\r\n0\r\nX: a\rb\r\n\r\n", "", false, true},
		{"trailer, NUL in a value", "1\r\na\r\n0\r\nX: a\x00\r\n\r\n", "", false, true},
		{"trailer, obsolete folding", "1\r\na\r\n0\r\nX: a\r\n b\r\n\r\n", "", false, true},
		{"trailer, space before colon", "1\r\na\r\n0\r\nX : a\r\n\r\n", "", false, true},
		{"trailer, no colon", "1\r\na\r\n0\r\nX-A\r\n\r\n", "", false, true},
		{"trailer, no name", "1\r\na\r\n0\r\n: a\r\n\r\n", "", false, true},
		{"LF-only after data", "1\r\na\n0\r\n\r\n", "", false, true},
		{"leading space before a size", " 1\r\na\r\n0\r\n\r\n", "", false, true},
		{"sign before a size", "+1\r\na\r\n0\r\n\r\n", "", false, true},
		{"0x prefix", "0x1\r\na\r\n0\r\n\r\n", "", false, true},
	} {
		for _, step := range []int{1, 2, 3, 7, 1 << 20} {
			data, ended, err := decodeChunked([]byte(tt.in), step)
			if (err != nil) != tt.bad {
				t.Errorf("%s (pieces of %d): error %v, want error %v", tt.name, step, err, tt.bad)
				continue
			}
			if tt.bad {
				continue
			}
			if string(data) != tt.data || ended != tt.ended {
				t.Errorf("%s (pieces of %d): got %q ended=%v, want %q ended=%v", tt.name, step, data, ended, tt.data, tt.ended)
			}
		}
	}
}

// The decoder stops at the body's end: bytes behind it are not its own.
func TestChunkDecoderStopsAtEnd(t *testing.T) {
	in := []byte("1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")
	var d ChunkDecoder
	used := 0
	for !d.Finished() {
		n, err := d.Frame(in[used:])
		if err != nil {
			t.Fatal(err)
		}
		m := int(d.DataLeft())
		d.Took(m)
		used += n + m
	}
	if rest := string(in[used:]); rest != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("left %q behind the body", rest)
	}
}

func FuzzChunkDecoder(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("3;x=y\r\nabc\r\n0\r\nA: b\r\n\r\n"), uint8(1))
	f.Add([]byte("3;x=\"y\\\"z\" ; q\r\nabc\r\n0\r\n\r\n"), uint8(2))
	f.Add([]byte("3;x=\"abc\r\nabc\r\n0\r\n\r\n"), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole, endedWhole, errWhole := decodeChunked(in, len(in)+1)
		parts, endedParts, errParts := decodeChunked(in, int(step%16)+1)
		if (errWhole != nil) != (errParts != nil) || endedWhole != endedParts || !bytes.Equal(whole, parts) {
			t.Fatalf("split decoding differs: %q %v %v vs %q %v %v", whole, endedWhole, errWhole, parts, endedParts, errParts)
		}
	})
}
