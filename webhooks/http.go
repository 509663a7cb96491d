package webhooks

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/follow"
)

// Where the API server serves the kit, under its own authentication and
// authorization (non-resource URLs, as the admission traces).
const (
	ExchangesPath = "/gatehouse/v1/webhooks/exchanges"
	FaultsPath    = "/gatehouse/v1/webhooks/faults"
)

// ExchangesHandler serves the log: GET with optional webhook (a name, or
// configuration/name), after (an exchange ID) and limit; with follow=true
// it streams new exchanges as JSON lines until the client goes. Without
// follow the answer is JSON lines too, so that it can be saved as a file
// for replay and stubs.
func (k *Kit) ExchangesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			http.Error(w, "only GET", http.StatusMethodNotAllowed)
			return
		}
		q := req.URL.Query()
		after, limit, err := follow.ParseQuery(q, "exchange")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := Filter{Webhook: q.Get("webhook"), After: after}
		var ch <-chan *Exchange
		if q.Get("follow") == "true" {
			var stop func()
			// Followed before listing, so that nothing falls between.
			ch, stop = k.Log.Follow(1000)
			defer stop()
		}
		follow.Stream(w, req, k.Log.List(f, limit), ch, follow.Options[*Exchange]{
			ID:      func(e *Exchange) uint64 { return e.ID },
			Matches: f.Matches,
		})
	})
}

// FaultSetting is one webhook's fault, as the faults endpoint takes and
// lists it.
type FaultSetting struct {
	Webhook string `json:"webhook"`
	Fault   string `json:"fault"`
}

// FaultsHandler lists (GET) and sets (PUT, a FaultSetting; an empty fault
// clears) the faults set by webhook name.
func (k *Kit) FaultsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet:
		case http.MethodPut:
			var s FaultSetting
			if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<16)).Decode(&s); err != nil {
				http.Error(w, "not a fault setting: "+err.Error(), http.StatusBadRequest)
				return
			}
			if s.Webhook == "" {
				http.Error(w, "webhook: a name is required", http.StatusBadRequest)
				return
			}
			var f Fault
			if s.Fault != "" {
				var err error
				if f, err = ParseFault(s.Fault); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			k.SetFault(s.Webhook, f)
		default:
			http.Error(w, "only GET and PUT", http.StatusMethodNotAllowed)
			return
		}
		faults := k.Faults()
		out := []FaultSetting{}
		for name, f := range faults {
			out = append(out, FaultSetting{Webhook: name, Fault: f.String()})
		}
		slices.SortFunc(out, func(a, b FaultSetting) int {
			if a.Webhook < b.Webhook {
				return -1
			}
			if a.Webhook > b.Webhook {
				return 1
			}
			return 0
		})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"faults": out})
	})
}
