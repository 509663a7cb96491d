package metricsapi

import (
	"context"
	"fmt"
	"os"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/informers"
	"k8s.io/klog/v2"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorclient "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	kubeletclient "k8s.io/kubernetes/pkg/kubelet/client"
	"k8s.io/metrics/pkg/apis/metrics"
	"k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// DefaultResolution is how often nodes are scraped: metrics-server's
// default --metric-resolution.
const DefaultResolution = 15 * time.Second

// ResolutionEnv, when set to a Go duration, replaces DefaultResolution
// (tests use it to see figures sooner).
const ResolutionEnv = "GATEHOUSE_METRICS_RESOLUTION"

// APIServiceName is the APIService that makes the aggregator serve the
// group locally.
const APIServiceName = "v1beta1.metrics.k8s.io"

// Config is what the metrics API needs from the API server.
type Config struct {
	// Informers is the API server's shared informer factory (started by
	// its post-start hook); nodes and pods are listed from it.
	Informers informers.SharedInformerFactory
	// Kubelet is the API server's kubelet client configuration: its client
	// certificate, the kubelet CA if any, the preferred address types.
	Kubelet kubeletclient.KubeletClientConfig
	// Resolution is the scrape interval; 0 means ResolutionEnv or
	// DefaultResolution.
	Resolution time.Duration
}

// Install adds metrics.k8s.io v1beta1 to the kube-apiserver that the
// aggregator delegates to, and a post-start hook on the aggregator that
// starts the scraper and makes sure the local APIService exists. It must
// run before the aggregator's PrepareRun.
func Install(aggregator *genericapiserver.GenericAPIServer, cfg Config) error {
	delegate, ok := aggregator.NextDelegate().(*genericapiserver.GenericAPIServer)
	if !ok {
		return fmt.Errorf("metrics API: the aggregator delegates to a %T, not a generic API server", aggregator.NextDelegate())
	}
	resolution, err := resolution(cfg.Resolution)
	if err != nil {
		return err
	}
	nodes, pods := cfg.Informers.Core().V1().Nodes(), cfg.Informers.Core().V1().Pods()
	// Requested now, so that the API server's informer hook starts them.
	nodeLister, podLister := nodes.Lister(), pods.Lister()
	conn, err := kubeletclient.NewNodeConnectionInfoGetter(kubeletclient.NodeGetterFunc(func(_ context.Context, name string, _ metav1.GetOptions) (*v1.Node, error) {
		return nodeLister.Get(name)
	}), cfg.Kubelet)
	if err != nil {
		return fmt.Errorf("metrics API: kubelet client: %w", err)
	}
	st := newStore(resolution)
	info := genericapiserver.NewDefaultAPIGroupInfo(metrics.GroupName, scheme, metav1.ParameterCodec, codecs)
	info.VersionedResourcesStorageMap[v1beta1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"nodes": &nodeREST{nodes: nodeLister, store: st},
		"pods":  &podREST{pods: podLister, store: st},
	}
	if err := delegate.InstallAPIGroup(&info); err != nil {
		return fmt.Errorf("metrics API: %w", err)
	}
	sc := &scraper{nodes: nodeLister, conn: conn, store: st, every: resolution, timeout: resolution * 9 / 10}
	return aggregator.AddPostStartHook("gatehouse-metrics-api", func(hook genericapiserver.PostStartHookContext) error {
		client, err := aggregatorclient.NewForConfig(hook.LoopbackClientConfig)
		if err != nil {
			return fmt.Errorf("metrics API: %w", err)
		}
		go func() {
			if !waitForSync(hook, nodes.Informer().HasSynced, pods.Informer().HasSynced) {
				return
			}
			sc.run(hook)
		}()
		return ensureAPIService(hook, client)
	})
}

func waitForSync(ctx context.Context, synced ...func() bool) bool {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, s := range synced {
			if !s() {
				return false, nil
			}
		}
		return true, nil
	})
	return err == nil
}

func resolution(configured time.Duration) (time.Duration, error) {
	if configured > 0 {
		return configured, nil
	}
	if v := os.Getenv(ResolutionEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return 0, fmt.Errorf("metrics API: %s=%q: want a duration of at least 1s", ResolutionEnv, v)
		}
		return d, nil
	}
	return DefaultResolution, nil
}

// apiService is the local APIService of the group: no service, so the
// aggregator hands its requests to the kube-apiserver it delegates to.
// Priorities are metrics-server's.
func apiService() *apiregistrationv1.APIService {
	return &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: APIServiceName, Labels: map[string]string{"gatehouse.dev/managed": "true"}},
		Spec: apiregistrationv1.APIServiceSpec{
			Group: metrics.GroupName, Version: v1beta1.SchemeGroupVersion.Version,
			GroupPriorityMinimum: 100, VersionPriority: 100,
		},
	}
}

// ensureAPIService creates the APIService, retrying while the API server
// finishes starting. An APIService of that name with a service (a
// metrics-server someone installed) is left alone: requests go there.
// Failing for a minute is logged, not fatal: a failed post-start hook
// would stop the API server, and only the metrics API is missing.
func ensureAPIService(ctx context.Context, client aggregatorclient.Interface) error {
	want := apiService()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		api := client.ApiregistrationV1().APIServices()
		cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
		case err == nil && cur.Spec.Service != nil:
			klog.InfoS("metrics API: an APIService with a service exists, which serves the group instead of Gatehouse", "name", want.Name, "service", cur.Spec.Service.Namespace+"/"+cur.Spec.Service.Name)
		}
		if err != nil {
			klog.V(2).InfoS("metrics API: registering the APIService", "name", want.Name, "err", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil && ctx.Err() == nil {
		klog.ErrorS(err, "metrics API: the APIService could not be registered; kubectl top will not work", "name", want.Name)
	}
	return nil
}
