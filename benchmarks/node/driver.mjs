// The makeInformer of @kubernetes/client-node, driven by the benchmark protocol:
//
//   node --expose-gc driver.mjs SERVER EVENTS MODE [key=value ...]
//
// prints one JSON line of measurements (see benchmarks/drivers/__init__.py). Its list is one
// unpaged listPodForAllNamespaces call, decoded into typed models; watch events stay plain
// objects. start() resolves once the list is cached and the watch request is on its way,
// which is the library's own notion of synced.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import * as k8s from '@kubernetes/client-node';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const args = {
    server: argv[0], events: Number(argv[1]), mode: argv[2], subscribers: 1, idle: 0,
    transform: 'none', settle: 0.5, timeout: 600,
  };
  for (const option of argv.slice(3)) {
    const [name, value] = option.split('=');
    if (name in args) {
      args[name] = typeof args[name] === 'number' ? Number(value) : value;
    }
  }
  return args;
}

function procStatusKB(field) {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith(`${field}:`));
  return line ? Number(line.split(/\s+/)[1]) : 0;
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

function sleep(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

function emit(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function kubeConfig(server) {
  const config = new k8s.KubeConfig();
  if (server.startsWith('http://') || server.startsWith('https://')) {
    config.loadFromClusterAndUser(
      { name: 'replay', server, skipTLSVerify: true },
      { name: 'bench', token: 'replay-token' },
    );
  } else {
    config.loadFromFile(server);
  }
  return config;
}

function libraryVersion() {
  const manifest = require.resolve('@kubernetes/client-node/package.json');
  return `@kubernetes/client-node ${JSON.parse(readFileSync(manifest, 'utf8')).version}`;
}

async function run(args) {
  const config = kubeConfig(args.server);
  const api = config.makeApiClient(k8s.CoreV1Api);
  const informer = k8s.makeInformer(config, '/api/v1/pods', () => api.listPodForAllNamespaces());
  const result = { contender: 'client-node', version: libraryVersion() };

  let seen = 0;
  let doneAt = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  informer.on('update', (pod) => {
    void pod.metadata.name;
    seen += 1;
    if (seen === args.events) {
      doneAt = now();
      finish();
    }
  });
  informer.on('error', (err) => {
    if (!doneAt) {
      result.error = `informer error: ${err}`;
      finish();
    }
  });

  global.gc?.();
  result.rss_start_kb = procStatusKB('VmRSS');
  const cpuStart = cpuSeconds();
  const start = now();
  await informer.start();
  const synced = now();
  const cpuSynced = cpuSeconds();

  if (args.events === 0) {
    await sleep(args.settle);
    global.gc?.();
    doneAt = synced;
    finish();
  }
  result.rss_synced_kb = procStatusKB('VmRSS');
  result.objects = informer.list().length;

  const timer = setTimeout(() => {
    result.error = 'events did not all arrive before the timeout';
    finish();
  }, args.timeout * 1000);
  await done;
  clearTimeout(timer);
  const cpuDone = cpuSeconds();
  Object.assign(result, {
    synced_s: synced - start,
    events_s: doneAt - synced,
    events_seen: args.events,
    cpu_sync_s: cpuSynced - cpuStart,
    cpu_events_s: cpuDone - cpuSynced,
  });

  if (args.idle > 0) {
    const before = cpuSeconds();
    await sleep(args.idle);
    result.cpu_idle_s = cpuSeconds() - before;
    result.idle_s = args.idle;
  }
  result.rss_end_kb = procStatusKB('VmRSS');
  result.hwm_kb = procStatusKB('VmHWM');
  await informer.stop();
  return result;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.mode !== 'run') {
    emit({ unavailable: `mode ${args.mode} is measured for other contenders` });
  } else if (args.transform !== 'none') {
    emit({ unavailable: 'makeInformer has no transform option' });
  } else {
    emit(await run(args));
  }
  process.exit(0);
}

main().catch((err) => {
  emit({ contender: 'client-node', error: String(err) });
  process.exit(0);
});
