package mirror

import (
	"math"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestAppendJSNumber(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{1, "1"},
		{-2, "-2"},
		{1.5, "1.5"},
		{0.1, "0.1"},
		{math.Copysign(0, -1), "0"},
		{123.456, "123.456"},
		{1e20, "100000000000000000000"},
		{1e21, "1e+21"},
		{1.5e21, "1.5e+21"},
		{0.000001, "0.000001"},
		{1e-7, "1e-7"},
		{1.25e-7, "1.25e-7"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{math.NaN(), "null"},
		{math.Inf(1), "null"},
	}
	for _, tt := range tests {
		if got := string(appendJSNumber(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSNumber(%v): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAppendJSString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"plain", `"plain"`},
		{`"quoted" \ back`, `"\"quoted\" \\ back"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		// JSON.stringify leaves these alone; Go's encoding/json would not.
		{"<a href='x'>&</a>\u2028\u2029", "\"<a href='x'>&</a>\u2028\u2029\""},
		{"héllo 日本 😀", `"héllo 日本 😀"`},
		{"bad \xff utf8", "\"bad \ufffd utf8\""},
	}
	for _, tt := range tests {
		if got := string(appendJSString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSString(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAppendJSDate(t *testing.T) {
	tests := []struct {
		ms   int64
		want string
	}{
		{time.Date(2023, 5, 23, 16, 33, 45, 202e6, time.UTC).UnixMilli(), `"2023-05-23T16:33:45.202Z"`},
		{0, `"1970-01-01T00:00:00.000Z"`},
		{-1, `"1969-12-31T23:59:59.999Z"`},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), `"+010000-01-01T00:00:00.000Z"`},
		{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), `"-000001-01-01T00:00:00.000Z"`},
		{8_640_000_000_000_001, `null`},
	}
	for _, tt := range tests {
		if got := string(appendJSDate(nil, tt.ms)); got != tt.want {
			t.Errorf("appendJSDate(%d): got %s, want %s", tt.ms, got, tt.want)
		}
	}
}

func TestAppendREST(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("646ceae9a8c3a3ba32d0e897")
	dec, _ := bson.ParseDecimal128("1.10")
	tests := []struct {
		name string
		doc  bson.D
		want string
	}{
		{"empty", bson.D{}, `{}`},
		{"order kept", bson.D{{Key: "z", Value: int32(1)}, {Key: "a", Value: int32(2)}}, `{"z":1,"a":2}`},
		{"ids and dates", bson.D{
			{Key: "_id", Value: oid},
			{Key: "at", Value: bson.DateTime(1684859625202)},
		}, `{"_id":"646ceae9a8c3a3ba32d0e897","at":"2023-05-23T16:33:45.202Z"}`},
		{"scalars", bson.D{
			{Key: "n", Value: nil}, {Key: "t", Value: true}, {Key: "i", Value: int64(1) << 40},
			{Key: "f", Value: 2.0}, {Key: "s", Value: "x"},
		}, `{"n":null,"t":true,"i":1099511627776,"f":2,"s":"x"}`},
		{"long beyond 2^53", bson.D{{Key: "l", Value: int64(1)<<53 + 1}},
			`{"l":{"low":1,"high":2097152,"unsigned":false}}`},
		{"nested", bson.D{{Key: "d", Value: bson.D{{Key: "a", Value: bson.A{int32(1), "b", bson.D{}}}}}},
			`{"d":{"a":[1,"b",{}]}}`},
		{"undefined dropped from documents, null in arrays", bson.D{
			{Key: "u", Value: bson.Undefined{}}, {Key: "a", Value: bson.A{bson.Undefined{}}},
		}, `{"a":[null]}`},
		{"binary, decimal, regex", bson.D{
			{Key: "b", Value: bson.Binary{Data: []byte("hi")}},
			{Key: "d", Value: dec},
			{Key: "r", Value: bson.Regex{Pattern: "a", Options: "i"}},
		}, `{"b":"aGk=","d":{"$numberDecimal":"1.10"},"r":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendREST(nil, tt.doc)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// BenchmarkRenderSession measures the mirror's own cost per session
// document (BSON decode into bson.D and REST JSON), without MongoDB or Redis.
func BenchmarkRenderSession(b *testing.B) {
	oid, _ := bson.ObjectIDFromHex("646ceae9a8c3a3ba32d0e897")
	at := bson.DateTime(1684859625202)
	raw, err := bson.Marshal(bson.D{
		{Key: "_id", Value: oid}, {Key: "type", Value: "session"}, {Key: "sessionId", Value: "QoYYFw2t9oKks2niG"},
		{Key: "instanceId", Value: "f0313fa9-ebe6-4a84-8580-3104f6a09988"},
		{Key: "loginToken", Value: "orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU="},
		{Key: "ip", Value: "172.20.0.2"}, {Key: "host", Value: "localhost:3000"},
		{Key: "device", Value: bson.D{{Key: "type", Value: "browser"}, {Key: "name", Value: "Chrome"},
			{Key: "os", Value: bson.D{{Key: "name", Value: "Windows"}, {Key: "version", Value: "10"}}}}},
		{Key: "userId", Value: "rbAXPnMktTFbNpwtJ"},
		{Key: "roles", Value: bson.A{"user", "admin", "livechat-agent", "livechat-manager"}},
		{Key: "loginAt", Value: at}, {Key: "day", Value: int32(23)}, {Key: "month", Value: int32(5)}, {Key: "year", Value: int32(2023)},
		{Key: "createdAt", Value: at}, {Key: "_updatedAt", Value: at}, {Key: "closedAt", Value: at}, {Key: "lastActivityAt", Value: at},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := renderSession(raw); err != nil {
			b.Fatal(err)
		}
	}
}
