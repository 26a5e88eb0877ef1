package mirror

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestLoginExpirationOf(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name  string
		value any
		want  time.Duration
	}{
		{"int32", int32(30), 30 * day},
		{"int64", int64(1), day},
		{"double", 0.5, 12 * time.Hour},
		{"zero", int32(0), 90 * day},
		{"negative", -1.0, 90 * day},
		{"string", "30", 90 * day},
		{"null", nil, 90 * day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := bson.Marshal(bson.D{{Key: "value", Value: tt.value}})
			if err != nil {
				t.Fatal(err)
			}
			if got := loginExpirationOf(bson.Raw(raw).Lookup("value")); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUserTokens(t *testing.T) {
	now := time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)
	exp := 90 * 24 * time.Hour
	when := func(d time.Duration) bson.DateTime { return bson.NewDateTimeFromTime(now.Add(d)) }
	doc := bson.D{
		{Key: "_id", Value: "u1"},
		{Key: "_updatedAt", Value: when(-time.Minute)},
		{Key: "services", Value: bson.D{{Key: "resume", Value: bson.D{{Key: "loginTokens", Value: bson.A{
			bson.D{{Key: "when", Value: when(-24 * time.Hour)}, {Key: "hashedToken", Value: "recent"}},
			bson.D{{Key: "when", Value: when(-exp - time.Second)}, {Key: "hashedToken", Value: "expired"}},
			bson.D{{Key: "hashedToken", Value: "pat"}, {Key: "type", Value: "personalAccessToken"}, {Key: "createdAt", Value: when(-exp * 2)}},
			bson.D{{Key: "when", Value: when(0)}, {Key: "token", Value: "plain"}},
			bson.D{{Key: "when", Value: when(0)}, {Key: "hashedToken", Value: "bad{hash}"}},
			"not a document",
		}}}}}},
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := userTokens(raw, exp, now)
	if !ok {
		t.Fatalf("userTokens: got not ok, want ok")
	}
	if u.UserID != "u1" || u.Version != now.Add(-time.Minute).UnixMilli() {
		t.Errorf("user: got %q version %d, want u1 version %d", u.UserID, u.Version, now.Add(-time.Minute).UnixMilli())
	}
	type tok struct {
		hash, value string
		ttl         time.Duration
	}
	want := []tok{
		{"recent", `{"when":"2024-01-09T12:00:00.000Z"}`, exp - 24*time.Hour},
		{"pat", `{"type":"personalAccessToken"}`, 0},
	}
	if len(u.Tokens) != len(want) {
		t.Fatalf("tokens: got %d, want %d", len(u.Tokens), len(want))
	}
	for i, w := range want {
		got := tok{u.Tokens[i].Hash, string(u.Tokens[i].Value), u.Tokens[i].TTL}
		if got != w {
			t.Errorf("token %d: got %+v, want %+v", i, got, w)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"rbAXPnMktTFbNpwtJ", true},
		{"", false},
		{"a{b", false},
		{"a}b", false},
		{"a\nb", false},
		{string(make([]byte, 257)), false},
	}
	for _, tt := range tests {
		if got := validID(tt.id); got != tt.want {
			t.Errorf("validID(%q): got %v, want %v", tt.id, got, tt.want)
		}
	}
}
