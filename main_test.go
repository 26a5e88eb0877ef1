package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/config"
)

// TestProxyOptionsMapsEveryField: each of the proxy's options comes from a
// configuration key, so an option added without its mapping stays zero and
// fails here. Log, Registerer and Routes are set by serve.
func TestProxyOptionsMapsEveryField(t *testing.T) {
	cfg := config.Defaults()
	cfg.Upstream.TLSInsecureSkipVerify = true
	cfg.Proxy.TrustedProxies = []string{"10.0.0.0/8"}
	cfg.Proxy.MaxConns = 7
	cfg.Proxy.EventLoops = 3
	cfg.Log.Access = true
	opts, err := proxyOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var check func(prefix string, v reflect.Value)
	check = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			name := prefix + v.Type().Field(i).Name
			switch name {
			case "Log", "Registerer", "Routes":
				continue
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				check(name+".", f)
				continue
			}
			if f.IsZero() {
				t.Errorf("proxyOptions: %s is zero, want it mapped from the configuration", name)
			}
		}
	}
	check("", reflect.ValueOf(opts))
	if got, want := opts.Upstream.ResponseHeaderTimeout, cfg.Upstream.ResponseHeaderTimeout; got != want || want < time.Second {
		t.Errorf("Upstream.ResponseHeaderTimeout: got %v, want %v", got, want)
	}

	cfg.Proxy.TrustedProxies = []string{"not an address"}
	if _, err := proxyOptions(cfg); err == nil {
		t.Error("proxyOptions with a bad proxy.trusted_proxies: got no error")
	}
}
