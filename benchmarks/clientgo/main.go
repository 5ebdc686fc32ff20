// Command clientgo drives a client-go SharedInformerFactory pods informer for the benchmark
// harness. It speaks the drivers' protocol (see benchmarks/drivers/__init__.py):
//
//	clientgo SERVER EVENTS MODE [key=value ...]
//
// and prints one JSON line of measurements on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// args holds the protocol's arguments.
type args struct {
	server      string
	events      int64
	mode        string
	subscribers int
	idle        float64
	transform   string
	settle      float64
	timeout     float64
}

func parseArgs() (args, error) {
	if len(os.Args) < 4 {
		return args{}, fmt.Errorf("usage: clientgo SERVER EVENTS MODE [key=value ...]")
	}
	events, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil {
		return args{}, fmt.Errorf("EVENTS %q: %w", os.Args[2], err)
	}
	a := args{server: os.Args[1], events: events, mode: os.Args[3], subscribers: 1,
		transform: "none", settle: 0.5, timeout: 600}

	for _, option := range os.Args[4:] {
		name, value, _ := strings.Cut(option, "=")
		number, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "subscribers":
			a.subscribers = int(number)
		case "idle":
			a.idle = number
		case "transform":
			a.transform = value
		case "settle":
			a.settle = number
		case "timeout":
			a.timeout = number
		}
	}
	return a, nil
}

// restConfig points at the replay server or loads a kubeconfig. JSON is asked for so every
// contender decodes the same bytes, and the client-side rate limit is lifted so paging is
// not throttled (an operator would raise it too; the default is 5 requests/s).
func restConfig(server string) (*rest.Config, error) {
	var config *rest.Config
	if strings.HasPrefix(server, "http://") || strings.HasPrefix(server, "https://") {
		config = &rest.Config{Host: server, BearerToken: "replay-token"}
	} else {
		loaded, err := clientcmd.BuildConfigFromFlags("", server)
		if err != nil {
			return nil, err
		}
		config = loaded
	}
	config.ContentType = "application/json"
	config.AcceptContentTypes = "application/json"
	config.QPS = 1000
	config.Burst = 1000
	return config, nil
}

func procStatusKB(field string) int64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, field+":") {
			parts := strings.Fields(line)
			value, _ := strconv.ParseInt(parts[1], 10, 64)
			return value
		}
	}
	return 0
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	seconds := func(t syscall.Timeval) float64 {
		return float64(t.Sec) + float64(t.Usec)/1e6
	}
	return seconds(usage.Utime) + seconds(usage.Stime)
}

// dropManagedFields is the transform: the pod without metadata.managedFields.
func dropManagedFields(obj interface{}) (interface{}, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		pod.ManagedFields = nil
	}
	return obj, nil
}

// counter counts watch events across handlers and closes done at the target.
type counter struct {
	seen   atomic.Int64
	target int64
	done   chan struct{}
	at     atomic.Int64
}

func (c *counter) count() {
	if c.seen.Add(1) == c.target {
		c.at.Store(time.Now().UnixNano())
		close(c.done)
	}
}

func run(a args) (map[string]interface{}, error) {
	config, err := restConfig(a.server)
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	subscribers := 1
	if a.mode == "share" {
		subscribers = a.subscribers
	}
	factory := informers.NewSharedInformerFactory(clientset, 0)
	counts := &counter{target: a.events * int64(subscribers), done: make(chan struct{})}

	for i := 0; i < subscribers; i++ {
		informer := factory.Core().V1().Pods().Informer()
		if a.transform != "none" && i == 0 {
			if err := informer.SetTransform(dropManagedFields); err != nil {
				return nil, err
			}
		}
		_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj interface{}) {
				_ = obj.(*corev1.Pod).Name
				counts.count()
			},
		})
		if err != nil {
			return nil, err
		}
	}
	informer := factory.Core().V1().Pods().Informer()
	result := map[string]interface{}{"contender": "client-go", "version": clientGoVersion()}
	return measure(a, factory, informer, counts, result)
}

func measure(a args, factory informers.SharedInformerFactory, informer cache.SharedIndexInformer,
	counts *counter, result map[string]interface{}) (map[string]interface{}, error) {
	runtime.GC()
	result["rss_start_kb"] = procStatusKB("VmRSS")
	cpuStart := cpuSeconds()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)

	// WaitForCacheSync polls every 100 ms; a 1 ms poll keeps the reading precise.
	deadline := start.Add(time.Duration(a.timeout * float64(time.Second)))
	for !informer.HasSynced() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not synced before the timeout")
		}
		time.Sleep(time.Millisecond)
	}
	synced := time.Now()
	cpuSynced := cpuSeconds()

	if a.events == 0 {
		time.Sleep(time.Duration(a.settle * float64(time.Second)))
		runtime.GC()
		debug.FreeOSMemory()
	}
	result["rss_synced_kb"] = procStatusKB("VmRSS")
	result["objects"] = len(informer.GetStore().ListKeys())

	doneAt := synced
	if counts.target > 0 {
		select {
		case <-counts.done:
			doneAt = time.Unix(0, counts.at.Load())
		case <-time.After(time.Until(deadline)):
			return nil, fmt.Errorf("events did not all arrive before the timeout")
		}
	}
	cpuDone := cpuSeconds()
	result["synced_s"] = synced.Sub(start).Seconds()
	result["events_s"] = doneAt.Sub(synced).Seconds()
	result["events_seen"] = counts.target
	result["cpu_sync_s"] = cpuSynced - cpuStart
	result["cpu_events_s"] = cpuDone - cpuSynced

	if a.idle > 0 {
		before := cpuSeconds()
		time.Sleep(time.Duration(a.idle * float64(time.Second)))
		result["cpu_idle_s"] = cpuSeconds() - before
		result["idle_s"] = a.idle
	}
	result["rss_end_kb"] = procStatusKB("VmRSS")
	result["hwm_kb"] = procStatusKB("VmHWM")
	return result, nil
}

// clientGoVersion reads the linked k8s.io/client-go version from the build information.
func clientGoVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, module := range info.Deps {
			if module.Path == "k8s.io/client-go" {
				return "client-go " + module.Version + " (" + runtime.Version() + ")"
			}
		}
	}
	return "client-go (unknown version)"
}

func emit(result map[string]interface{}) {
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}

func main() {
	a, err := parseArgs()
	if err != nil {
		emit(map[string]interface{}{"error": err.Error()})
		os.Exit(2)
	}
	if a.mode != "run" && a.mode != "share" {
		emit(map[string]interface{}{"unavailable": "mode " + a.mode + " is not measured here"})
		return
	}
	result, err := run(a)
	if err != nil {
		emit(map[string]interface{}{"contender": "client-go", "error": err.Error()})
		return
	}
	emit(result)
}
