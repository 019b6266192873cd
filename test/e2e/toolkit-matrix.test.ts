// Every tool of the full toolkit, run by the real CLI against four kinds of real runc container
// (test/helpers/targets.ts: scratch, glibc distroless, musl, nonroot), each with the test HTTP
// server as PID 1: ps sees it, strace/ltrace/gdb/eu-stack attach to it, lsof/ss/netstat/fuser
// find its socket, curl/socat/nc/tcpdump/ngrep/nmap talk to it or watch the traffic, the text
// tools read its files; dig/host/nslookup ask a DNS server started in the container
// (test/fixtures/dnsd.c), openssl s_client verifies the toolkit's own s_server there,
// iperf3 measures against its own server, iptables/nft/conntrack work in the container's
// network namespace; htop, vi, nano and the toolkit's tmux draw on a real terminal (tmux). The musl root also holds planted glibc
// files (garbage libc.so.6, ld-linux, ld.so.cache, a valid foreign libnuma.so.1) and
// LD_LIBRARY_PATH=/garbage in PID 1's environment: every tool there runs with LD_DEBUG=libs
// and must load nothing from outside /dev/crashcart.
// CRASHCART_TEST_MATRIX_DUMP=DIR keeps every run's script and output (for debugging).
//
// The heavy work (one image build, the containers, one crashcart run per container and kind
// of check, all at once) happens in before(); each tool and container is then its own test,
// so a broken tool fails by name with its output.
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliEnvWords, fullTestImage, runCrashcart } from '../helpers/cli.js';
import { assertNoLeaks, onPath, projectRoot, requireCommand, requireRoot, snapshotHost, type HostSnapshot } from '../helpers/host.js';
import {
  DNSD, DNSD_ADDRESS, GARBAGE_LIBRARY_PATH, HTTP_BODY, HTTP_PORT, NONROOT_ID, startTarget, TARGET_KINDS, type Target, type TargetKind,
} from '../helpers/targets.js';
import { startTerminal, stopTerminals, type Terminal } from '../helpers/terminal.js';
import { until } from '../helpers/wait.js';

const TOOLKIT = '/dev/crashcart';
const PLANTED: TargetKind = 'musl';
const PORT = HTTP_PORT;
const URL = `http://127.0.0.1:${PORT}/`;
const BODY = HTTP_BODY.trimEnd();
const HTTP_GET = String.raw`printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'`;
/**
 * Within a check: `tracer -p 1` in the background, with its output in a file; once a line of
 * it matches `ready` (grep's basic regex: a call the tracer shows only once it traces the
 * server), one request to the server, then SIGINT detaches the tracer. The server stops at
 * each traced call until the tracer has seen it, so the request's calls are in the output
 * when curl has its answer.
 */
const traced = (tracer: string, ready: string) => `o=/dev/shm/crashcart-trace.$$
${tracer} -p 1 2>$o & p=$!
for i in $(seq 200); do grep -q ${shellQuote(ready)} $o && break; kill -0 $p 2>/dev/null || break; sleep 0.05; done
curl -s ${URL} >/dev/null
kill -INT $p 2>/dev/null; wait $p; echo "rc=$?"
cat $o; rm -f $o`;
const HOST_COMMANDS = ['runc', 'gcc', 'musl-gcc', 'ldd', 'dpkg', 'tmux'];
const TLS_PORT = 8443;
const IPERF_PORT = 5201;
const DNS_ANSWER = DNSD_ADDRESS.replaceAll('.', '\\.');

/** Shell: waits (10 s at most) until something listens on 127.0.0.1:`port` in the container. */
function listening(proto: 'tcp' | 'udp', port: number): string {
  // /proc/net/{tcp,udp}: local address 0100007F:<port in hex>, state 0A (LISTEN) or 07 (UDP bound)
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return `for i in $(seq 200); do grep -q ' 0100007F:${hex} 00000000:0000 ${proto === 'tcp' ? '0A' : '07'} ' /proc/net/${proto} && break; sleep 0.05; done`;
}

/** Shell: `command` against the container's own DNS server (test/fixtures/dnsd.c) on 127.0.0.1:53. */
function withDnsd(command: string): string {
  return `${DNSD} & d=$!
${listening('udp', 53)}
${command}
rc=$?; kill $d; wait $d; exit $rc`;
}

const canRun = () => process.getuid?.() === 0 && HOST_COMMANDS.every(onPath);

function ready(t: TestContext): boolean {
  return requireRoot(t) && HOST_COMMANDS.every((c) => requireCommand(t, c));
}

interface Expect {
  code?: number;
  match: RegExp[];
}

interface Check {
  /** the tool (a name in /dev/crashcart/bin) */
  tool: string;
  /** bash, run in the container as root; stderr goes with stdout */
  run: string;
  expect: (t: Target) => Expect;
}

const isStatic = (t: Target) => t.kind === 'scratch';
const hasPasswd = (t: Target) => t.kind === 'glibc' || t.kind === 'nonroot';
/** How ps and friends name PID 1's user. */
const userOf = (t: Target) => (t.uid === 0 ? (hasPasswd(t) ? 'root' : '0') : hasPasswd(t) ? 'nonroot' : String(t.uid));

/** `file` on PID 1's executable, per kind of root. */
function exeKind(t: Target): RegExp {
  if (isStatic(t)) return /ELF 64-bit LSB executable, x86-64, .*statically linked/;
  if (t.kind === 'musl') return /ELF 64-bit LSB pie executable, x86-64, .*dynamically linked, interpreter \/lib\/ld-musl-x86_64\.so\.1/;
  return /ELF 64-bit LSB pie executable, x86-64, .*dynamically linked, interpreter \/lib64\/ld-linux-x86-64\.so\.2/;
}

const ok = (...match: RegExp[]): Expect => ({ match });

const CHECKS: Check[] = [
  { tool: 'bash', run: 'echo "bash $BASH_VERSION"; echo "exe $(readlink /proc/$$/exe)"', expect: () => ok(/^bash \d+\.\d+/m, /^exe \/dev\/crashcart\/bin\/bash$/m) },
  { tool: 'ps', run: 'ps -e -o pid,user,comm,args', expect: (t) => ok(new RegExp(`^\\s*1\\s+${userOf(t)}\\s+httpd\\s+/bin/httpd ${PORT}$`, 'm'), /^\s*\d+\s+\S+\s+ps\s/m) },
  { tool: 'top', run: 'top -b -n1 -w 200', expect: (t) => ok(/^Tasks:\s+\d+ total/m, new RegExp(`^\\s*1 ${userOf(t)}\\s.*\\bhttpd\\s*$`, 'm')) },
  { tool: 'pgrep', run: 'pgrep -a httpd', expect: () => ok(new RegExp(`^1 /bin/httpd ${PORT}$`, 'm')) },
  { tool: 'pmap', run: 'pmap 1', expect: (t) => ok(new RegExp(`^1:\\s+/bin/httpd ${PORT}$`, 'm'), /\bhttpd$/m, /^\s*total\s+\d+K$/m, ...(isStatic(t) ? [] : [t.kind === 'musl' ? /\blibc\.so$/m : /\blibc\.so\.6$/m])) },
  { tool: 'free', run: 'free -m', expect: () => ok(/^Mem:\s+\d+\s+\d+/m, /^Swap:/m) },
  { tool: 'pstree', run: 'pstree -p 1', expect: () => ok(/^httpd\(1\)/m) },
  { tool: 'fuser', run: `fuser -n tcp ${PORT}`, expect: () => ok(new RegExp(`${PORT}/tcp:\\s+1\\b`)) },
  { tool: 'killall', run: 'killall -l && killall -0 httpd && echo "httpd found"', expect: () => ok(/\bTERM\b/, /^httpd found$/m) },
  {
    tool: 'nsenter',
    run: 'echo "pid1 $(readlink /proc/1/ns/net)"; echo "nsenter $(nsenter -t 1 -n -m -u -i -- readlink /proc/self/ns/net)"',
    expect: () => ok(/^pid1 (net:\[\d+\])\nnsenter \1$/m),
  },
  { tool: 'setpriv', run: `setpriv --reuid=${NONROOT_ID} --regid=${NONROOT_ID} --clear-groups -- id -u`, expect: () => ok(new RegExp(`^${NONROOT_ID}$`, 'm')) },
  { tool: 'lsblk', run: 'lsblk -o NAME,MAJ:MIN,TYPE', expect: () => ok(/^NAME\s+MAJ:MIN\s+TYPE$/m, /^loop\d+\s+7:\d+\s+loop$/m) },
  { tool: 'findmnt', run: `findmnt -n -o TARGET,FSTYPE,OPTIONS ${TOOLKIT}`, expect: () => ok(/^\/dev\/crashcart\s+ext3\s+ro,/m) },
  {
    // attach, see the poll loop and the curl's accept and answer, detach on SIGINT
    tool: 'strace',
    // ready: a whole turn of the server's poll loop
    run: traced('strace', '^poll(\\[{fd=3, events=POLLIN}], 1, 500)'),
    expect: () => ok(/Process 1 attached/, /^poll\(\[\{fd=3, events=POLLIN\}\], 1, 500\)/m, /^accept\(3, NULL, NULL\)\s+= 4$/m, /^write\(4, "HTTP\/1\.0 200 OK/m, /Process 1 detached/),
  },
  {
    // -S: system calls too. ltrace cannot attach to a static program at all (it finds no
    // dynamic symbols), so in scratch it must say exactly that.
    tool: 'ltrace',
    // ready: a library call, so its breakpoints are in
    run: traced('ltrace -S', '^poll('),
    expect: (t) => (isStatic(t)
      ? ok(/^Couldn't find \.dynsym or \.dynstr in "\/proc\/1\/exe"$/m, /^rc=1$/m)
      : ok(/SYS_poll\(/, /SYS_accept\(/, /^poll\(0x[0-9a-f]+, 1, 500\b/m, /^accept\(3, 0, 0\b/m)),
  },
  // ltrace starting a (dynamic) toolkit program: works whatever the container's PID 1 is
  { tool: 'ltrace-run', run: 'ltrace -e nanosleep+clock_nanosleep sleep 0.1', expect: () => ok(/\bsleep->(clock_)?nanosleep\(/, /^\+\+\+ exited \(status 0\) \+\+\+$/m) },
  {
    // musl's libc has no unwind tables: the backtrace stops in it, without reaching main
    tool: 'gdb',
    run: 'gdb -p 1 -batch -ex bt -ex "info inferiors" -ex "info address answer"',
    expect: (t) => ok(
      /^#0\s+0x[0-9a-f]+ in /m,
      t.kind === 'musl' ? /^#0\s.* from \/lib\/ld-musl-x86_64\.so\.1$/m : /^#\d+\s.*\bmain \(.*\) at .*httpd\.c:\d+$/m,
      /^\* 1\s+process 1\s.*\/bin\/httpd/m,
      /^Symbol "answer" is a function at address 0x[0-9a-f]+\.$/m,
      /^\[Inferior 1 \(process 1\) detached\]$/m,
    ),
  },
  { tool: 'lsof', run: 'lsof -nP -l -p 1', expect: () => ok(new RegExp(`\\bTCP 127\\.0\\.0\\.1:${PORT} \\(LISTEN\\)$`, 'm'), /\btxt\s+REG\s.*\/bin\/httpd$/m) },
  { tool: 'ss', run: 'ss -ltnp', expect: () => ok(new RegExp(`^LISTEN\\s+\\d+\\s+\\d+\\s+127\\.0\\.0\\.1:${PORT}\\s+0\\.0\\.0\\.0:\\*\\s+users:\\(\\("httpd",pid=1,fd=3\\)\\)`, 'm')) },
  { tool: 'ip', run: 'ip link set lo up && ip addr show lo', expect: () => ok(/<LOOPBACK,UP,LOWER_UP>/, /^\s+inet 127\.0\.0\.1\/8 scope host lo$/m) },
  { tool: 'ping', run: 'ping -c1 -W3 127.0.0.1', expect: () => ok(/^1 packets transmitted, 1 received, 0% packet loss/m) },
  { tool: 'netstat', run: 'netstat -ltnp', expect: () => ok(new RegExp(`^tcp\\s+0\\s+0\\s+127\\.0\\.0\\.1:${PORT}\\s+0\\.0\\.0\\.0:\\*\\s+LISTEN\\s+1/httpd`, 'm')) },
  { tool: 'curl', run: `curl -sS ${URL}`, expect: () => ok(new RegExp(`^${BODY}$`)) },
  {
    // the first packet of a connection to the server: the client's SYN (only SYNs: other
    // runs in the same container talk to the server meanwhile)
    tool: 'tcpdump',
    run: `timeout 15 tcpdump -i lo -n -l -c 1 'tcp dst port ${PORT} and tcp[tcpflags] & tcp-syn != 0' & p=$!
for i in $(seq 50); do kill -0 $p 2>/dev/null || break; curl -s ${URL} >/dev/null; sleep 0.2; done
wait $p`,
    expect: () => ok(new RegExp(`IP 127\\.0\\.0\\.1\\.\\d+ > 127\\.0\\.0\\.1\\.${PORT}: Flags \\[S\\]`), /^1 packet captured$/m),
  },
  { tool: 'socat', run: `${HTTP_GET} | socat - TCP:127.0.0.1:${PORT}`, expect: () => ok(/^HTTP\/1\.0 200 OK\r$/m, new RegExp(`^${BODY}$`, 'm')) },
  { tool: 'nc', run: `nc -z 127.0.0.1 ${PORT} && echo "port open"; ${HTTP_GET} | nc -N -w 5 127.0.0.1 ${PORT}`, expect: () => ok(/^port open$/m, /^HTTP\/1\.0 200 OK\r$/m, new RegExp(`^${BODY}$`, 'm')) },
  { tool: 'less', run: 'less /proc/1/status', expect: () => ok(/^Name:\s+httpd$/m, /^Pid:\s+1$/m) },
  { tool: 'file', run: 'file -L /proc/1/exe', expect: (t) => ok(exeKind(t)) },
  { tool: 'grep', run: "grep -E '^(Name|Pid):' /proc/1/status", expect: () => ok(/^Name:\s+httpd\nPid:\s+1$/m) },
  { tool: 'sed', run: "sed -n 's/^Name:[[:space:]]*//p' /proc/1/status", expect: () => ok(/^httpd$/) },
  { tool: 'awk', run: `awk '$1 == "Uid:" { print "uid", $2 }' /proc/1/status`, expect: (t) => ok(new RegExp(`^uid ${t.uid}$`)) },
  { tool: 'find', run: 'find / -xdev -name httpd -type f', expect: () => ok(/^\/bin\/httpd$/) },
  { tool: 'tar', run: 'tar -C /bin -cf - httpd | tar -tvf -', expect: () => ok(/^-rwxr-xr-x (root|0)\/(root|0)\s+\d+ .* httpd$/m) },
  // -z: tar starts gzip through /bin/sh -c, which the container may not have
  { tool: 'tar-z', run: 'tar -C /bin -czf - httpd | tar -tzf -', expect: () => ok(/^httpd$/m) },
  { tool: 'gzip', run: "cat /proc/1/cmdline | gzip -c | gzip -dc | tr '\\0' ' '", expect: () => ok(new RegExp(`^/bin/httpd ${PORT} $`)) },
  { tool: 'diff', run: 'diff <(printf "a\\nb\\n") <(printf "a\\nc\\n")', expect: () => ({ code: 1, match: [/^2c2\n< b\n---\n> c$/m] }) },
  { tool: 'vi', run: "vi -es -c 'g/^Name:/p' -c 'q!' /proc/1/status", expect: () => ok(/^Name:\s+httpd$/m) },
  { tool: 'nano', run: 'nano --version', expect: () => ok(/GNU nano, version \d/) },
  { tool: 'htop', run: 'htop --version', expect: () => ok(/^htop \d+\.\d+/m) },
  { tool: 'busybox', run: 'busybox echo "busybox ran"', expect: () => ok(/^busybox ran$/m) },
  {
    // name lookups read the container's /etc, as they should
    tool: 'getent',
    run: `getent passwd ${NONROOT_ID}`,
    expect: (t) => (hasPasswd(t) ? ok(new RegExp(`^nonroot:x:${NONROOT_ID}:${NONROOT_ID}:`, 'm')) : { code: 2, match: [/^$/] }),
  },
  // ---- name lookups, TLS, the firewall, the network's own tools, against servers in the container ----
  {
    tool: 'dig',
    run: withDnsd('dig @127.0.0.1 +tries=1 +time=5 crashcart.test A'),
    expect: () => ok(/status: NOERROR/, /flags: qr aa rd;/, new RegExp(`^crashcart\\.test\\.\\s+60\\s+IN\\s+A\\s+${DNS_ANSWER}$`, 'm'), /^;; SERVER: 127\.0\.0\.1#53\(127\.0\.0\.1\) \(UDP\)$/m),
  },
  { tool: 'host', run: withDnsd('host -W 5 -t A crashcart.test 127.0.0.1'), expect: () => ok(new RegExp(`^crashcart\\.test has address ${DNS_ANSWER}$`, 'm')) },
  {
    // bind's nslookup, not busybox's
    tool: 'nslookup',
    run: withDnsd('nslookup -version; nslookup -timeout=5 -type=A crashcart.test 127.0.0.1'),
    expect: () => ok(/^nslookup 9\.\d+/m, /^Name:\s+crashcart\.test$/m, new RegExp(`^Address: ${DNS_ANSWER}$`, 'm')),
  },
  {
    // a throwaway key and certificate, the toolkit's own s_server, and s_client verifying it
    tool: 'openssl',
    run: `d=$(mktemp -d /dev/shm/crashcart-tls.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $d/key.pem -out $d/cert.pem -subj /CN=localhost -days 1 2>&1 | grep -v '^-*$'
openssl s_server -accept 127.0.0.1:${TLS_PORT} -cert $d/cert.pem -key $d/key.pem -www -quiet & s=$!
${listening('tcp', TLS_PORT)}
${HTTP_GET} | openssl s_client -connect 127.0.0.1:${TLS_PORT} -servername localhost -CAfile $d/cert.pem -verify_return_error -brief -ign_eof 2>&1
rc=$?
kill $s; wait $s; rm -rf $d; exit $rc`,
    expect: () => ok(/^Protocol version: TLSv1\.3$/m, /^Verification: OK$/m, /^Peer certificate: CN = localhost$/m, /^HTTP\/1\.0 200 ok\r?$/m),
  },
  {
    // OpenSSL's modules come from the toolkit: the legacy provider loads
    tool: 'openssl-modules',
    run: 'openssl list -providers -provider legacy -provider default; openssl version -m',
    expect: () => ok(/^\s+name: OpenSSL Legacy Provider$/m, /^\s+status: active$/m, /^MODULESDIR: "\/dev\/crashcart\/lib\/ossl-modules"\s*$/m),
  },
  {
    tool: 'jq',
    run: String.raw`jq -R -s -c 'split("
") | map(select(test("^(Name|Pid):")) | split(":	") | {(.[0]): .[1]}) | add' /proc/1/status`,
    expect: () => ok(/^\{"Name":"httpd","Pid":"1"\}$/),
  },
  {
    // its nf_tables backend in the container's network namespace; -m comment loads an extension
    tool: 'iptables',
    run: `rule='INPUT -i lo -p tcp --dport 9 -m comment --comment crashcart-matrix -j ACCEPT'
iptables -V && iptables -A $rule && iptables -S INPUT && iptables -L INPUT -n; rc=$?
iptables -D $rule; exit $rc`,
    expect: () => ok(/^iptables v1\.\d+\.\d+ \(nf_tables\)$/m, /^-A INPUT -i lo -p tcp -m tcp --dport 9 -m comment --comment crashcart-matrix -j ACCEPT$/m, /^Chain INPUT \(policy ACCEPT\)$/m),
  },
  {
    tool: 'nft',
    run: `nft add table inet crashcart_matrix && nft add chain inet crashcart_matrix probe && nft add rule inet crashcart_matrix probe tcp dport 9 counter && nft list ruleset; rc=$?
nft delete table inet crashcart_matrix; exit $rc`,
    expect: () => ok(/^table inet crashcart_matrix \{$/m, /^\s+tcp dport 9 counter packets 0 bytes 0$/m),
  },
  {
    // a rule that needs connection tracking turns it on in the namespace; one request is a flow
    tool: 'conntrack',
    run: `rule='OUTPUT -o lo -p tcp --dport ${PORT} -m conntrack --ctstate NEW -m comment --comment crashcart-matrix -j ACCEPT'
iptables -I $rule || exit 1
curl -s ${URL} >/dev/null
conntrack -L -p tcp --dport ${PORT}; rc=$?
iptables -D $rule; exit $rc`,
    expect: () => ok(new RegExp(`^tcp\\s+6\\s+\\d+ \\S+ src=127\\.0\\.0\\.1 dst=127\\.0\\.0\\.1 sport=\\d+ dport=${PORT} `, 'm'), /flow entries have been shown/),
  },
  { tool: 'ethtool', run: 'ethtool lo; ethtool -k lo', expect: () => ok(/^Settings for lo:$/m, /^\s+Link detected: yes$/m, /^tcp-segmentation-offload: on$/m) },
  { tool: 'mtr', run: 'mtr --report --report-cycles 1 --no-dns 127.0.0.1', expect: () => ok(/^\s+1\.\|-- 127\.0\.0\.1\s+0\.0%\s+1\s/m) },
  {
    tool: 'iperf3',
    run: `iperf3 -s -1 -B 127.0.0.1 -p ${IPERF_PORT} >/dev/null & s=$!
${listening('tcp', IPERF_PORT)}
iperf3 -c 127.0.0.1 -p ${IPERF_PORT} -t 1 -f m; rc=$?
wait $s; exit $rc`,
    expect: () => ok(/^\[\s*\d+\]\s+0\.00-1\.\d+\s+sec\s+[\d.]+ [KMG]?Bytes\s+[\d.]+ Mbits\/sec\s+receiver$/m, /^iperf Done\.$/m),
  },
  { tool: 'iostat', run: 'iostat 1 1', expect: () => ok(/^avg-cpu:\s+%user\s+%nice\s+%system/m, /^Device\s+tps\s+kB_read\/s/m) },
  { tool: 'pidstat', run: 'pidstat -p 1 1 1', expect: (t) => ok(new RegExp(`^Average:\\s+${t.uid}\\s+1\\s.*\\shttpd$`, 'm')) },
  { tool: 'mpstat', run: 'mpstat -P ALL 1 1', expect: () => ok(/^Average:\s+CPU\s+%usr/m, /^Average:\s+all\s/m, /^Average:\s+0\s/m) },
  // sar starts its data collector (libexec/sadc) by a compiled-in path
  { tool: 'sar', run: 'sar -u 1 1', expect: () => ok(/^Average:\s+all\s/m) },
  {
    // musl's libc has no unwind tables: the stack ends in it, and eu-stack says so (exit 1)
    tool: 'eu-stack',
    run: 'eu-stack -p 1',
    expect: (t) => (t.kind === 'musl'
      ? { code: 1, match: [/^PID 1 - process$/m, /^TID 1:$/m, /^#0\s+0x[0-9a-f]+ \w+$/m, /No DWARF information found$/m] }
      : ok(/^PID 1 - process$/m, /^TID 1:$/m, /^#0\s+0x[0-9a-f]+ /m, /^#\d+\s+0x[0-9a-f]+ main$/m)),
  },
  { tool: 'capsh', run: 'capsh --print', expect: () => ok(/^Current: =ep\b/m, /^Bounding set =cap_chown,/m) },
  { tool: 'getpcaps', run: 'getpcaps 1', expect: () => ok(/^1: \S/m) },
  {
    // Debian's traceroute (busybox would otherwise have the name)
    tool: 'traceroute',
    run: 'traceroute -n -q 1 -w 2 127.0.0.1',
    expect: () => ok(/^traceroute to 127\.0\.0\.1 \(127\.0\.0\.1\), 30 hops max, 60 byte packets$/m, /^ 1  127\.0\.0\.1  [\d.]+ ms$/m),
  },
  {
    // the server's answer on lo, matched by its text
    tool: 'ngrep',
    run: `timeout 15 ngrep -d lo -q -l -n 1 -W byline '${BODY}' 'tcp src port ${PORT}' & p=$!
for i in $(seq 50); do kill -0 $p 2>/dev/null || break; curl -s ${URL} >/dev/null; sleep 0.2; done
wait $p`,
    expect: () => ok(new RegExp(`^T 127\\.0\\.0\\.1:${PORT} -> 127\\.0\\.0\\.1:\\d+ \\[`, 'm'), new RegExp(`^${BODY}\\.?$`, 'm')),
  },
  {
    // a SYN scan and version detection of the server; nmap's data and OpenSSL's legacy
    // provider (which it loads) from the toolkit
    tool: 'nmap',
    run: `nmap -n -Pn -sV --version-light -p ${PORT} 127.0.0.1`,
    expect: () => ({ match: [new RegExp(`^${PORT}/tcp open\\s+http`, 'm'), /^Nmap done: 1 IP address \(1 host up\)/m, /^(?![\s\S]*(legacy provider failed|Unable to find))/] }),
  },
];

/** Run as the container's own user (uid 65532) in the nonroot container. */
const USER_CHECKS: Check[] = [
  { tool: 'id', run: 'id', expect: () => ok(new RegExp(`^uid=${NONROOT_ID}\\(nonroot\\) gid=${NONROOT_ID}\\(nonroot\\)`)) },
  { tool: 'ps', run: 'ps -e -o pid,user,comm', expect: () => ok(/^\s*1\s+nonroot\s+httpd$/m, /^\s*\d+\s+nonroot\s+ps$/m) },
  { tool: 'ls', run: 'ls -l /proc/1/exe /bin/httpd', expect: () => ok(/ \/proc\/1\/exe -> \/bin\/httpd$/m, /^-rwxr-xr-x 1 root\s+root\s+\d+ .* \/bin\/httpd$/m) },
  { tool: 'curl', run: `curl -sS ${URL}`, expect: () => ok(new RegExp(`^${BODY}$`)) },
  { tool: 'cat', run: 'cat /proc/1/status', expect: () => ok(/^Name:\s+httpd$/m, new RegExp(`^Uid:\\s+${NONROOT_ID}\\s`, 'm')) },
  { tool: 'ss', run: 'ss -ltn', expect: () => ok(new RegExp(`^LISTEN\\s+\\d+\\s+\\d+\\s+127\\.0\\.0\\.1:${PORT}\\s`, 'm')) },
];

/** With CRASHCART_TEST_MATRIX_DUMP=DIR, each run's script, stdout and stderr go to DIR/<name>.out. */
function dump(name: string, script: string, r: { stdout: string; stderr: string }): void {
  const dir = process.env.CRASHCART_TEST_MATRIX_DUMP;
  if (dir) writeFileSync(join(dir, `${name}.out`), `${script}\n===== stdout\n${r.stdout}\n===== stderr\n${r.stderr}\n`);
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** The LD_DEBUG=libs lines that matter (what was loaded; any search of the garbage path). */
const LD_LINES = `grep -hE 'calling init:|generating link map|trying file=${GARBAGE_LIBRARY_PATH}/'`;

/** LD_DEBUG_OUTPUT prefixes in the container's /dev/shm (one per concurrent run). */
const LD_MATRIX = '/dev/shm/crashcart-ld-matrix';
const LD_BIN = '/dev/shm/crashcart-ld-bin';

/**
 * One bash script running every check in turn, each fenced by markers with its exit code.
 * With ldDebug, each check runs under LD_DEBUG=libs with the loader's output in files under
 * /dev/shm (not interleaved with the tool's), printed after the check and removed.
 */
function matrixScript(checks: Check[], ldDebug: boolean): string {
  const lines = [
    'check() {',
    '  printf "@@@begin %s\\n" "$1"',
    ldDebug ? `  LD_DEBUG=libs LD_DEBUG_OUTPUT=${LD_MATRIX} timeout -k 5 40 bash -c "$2" </dev/null 2>&1` : '  timeout -k 5 40 bash -c "$2" </dev/null 2>&1',
    '  local rc=$?',
    '  printf "\\n@@@end %s %d\\n" "$1" "$rc"',
    ...(ldDebug ? [`  ${LD_LINES} ${LD_MATRIX}.* 2>/dev/null; rm -f ${LD_MATRIX}.*`, '  printf "@@@ldend %s\\n" "$1"'] : []),
    '}',
  ];
  for (const c of checks) lines.push(`check ${c.tool} ${shellQuote(c.run)}`);
  return lines.join('\n');
}

interface Outcome {
  code: number;
  output: string;
  /** the loader's LD_DEBUG=libs lines (ldDebug runs only) */
  ld?: string;
}

/** Splits a matrixScript's output into outcomes per tool. */
function parseMatrix(stdout: string): Map<string, Outcome> {
  const out = new Map<string, Outcome>();
  const re = /^@@@begin (\S+)\n([\s\S]*?)\n@@@end \1 (\d+)(?:\n|$)(?:([\s\S]*?)@@@ldend \1(?:\n|$))?/gm;
  for (const m of stdout.matchAll(re)) {
    out.set(m[1]!, { code: Number(m[3]), output: m[2]!.replace(/\n$/, ''), ...(m[4] !== undefined ? { ld: m[4] } : {}) });
  }
  return out;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  outcomes: Map<string, Outcome>;
}

async function runMatrix(image: string, t: Target, checks: Check[], opts: { user?: number; ldDebug?: boolean } = {}): Promise<RunResult> {
  const args = ['-i', image, ...(opts.user !== undefined ? ['--user', String(opts.user)] : []), t.container.id, '--', 'bash', '-c', matrixScript(checks, opts.ldDebug ?? false)];
  const r = await runCrashcart(args, { timeout: 300_000 });
  dump(`${t.kind}${opts.user !== undefined ? `-user${opts.user}` : ''}`, args.at(-1)!, r);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, outcomes: parseMatrix(r.stdout) };
}

/**
 * Every library the loader mapped or initialised, from LD_DEBUG=libs output: the lines
 * "file=/path [0];  generating link map" and "calling init: /path".
 */
function loadedLibraries(ld: string): string[] {
  const out = new Set<string>();
  for (const m of ld.matchAll(/(?:file=(\/\S+) +\[\d+\];\s+generating link map|calling init: (\/\S+))/g)) out.add((m[1] ?? m[2])!);
  return [...out];
}

/** LD_DEBUG's own lines ("   PID:\t...") within a program's output. */
function loaderLines(output: string): string {
  return output.split('\n').filter((l) => /^ *\d+:\t/.test(l)).join('\n');
}

function assertLoadedFromToolkit(what: string, ld: string | undefined): void {
  assert.ok(ld !== undefined, `${what}: no LD_DEBUG output collected`);
  const libs = loadedLibraries(ld);
  assert.ok(libs.length > 0, `${what}: LD_DEBUG=libs showed no library at all:\n${ld}`);
  const outside = libs.filter((l) => !l.startsWith(`${TOOLKIT}/`));
  assert.deepEqual(outside, [], `${what}: libraries loaded from outside ${TOOLKIT}`);
  assert.doesNotMatch(ld, new RegExp(`trying file=${GARBAGE_LIBRARY_PATH}/`), `${what}: the loader searched the container's LD_LIBRARY_PATH`);
}

function assertOutcome(run: RunResult | undefined, check: Check, t: Target, ldDebug: boolean): void {
  assert.ok(run, 'this run did not happen');
  const o = run.outcomes.get(check.tool);
  assert.ok(o, `${check.tool} did not run in ${t.kind}; crashcart exited ${run.code}: ${run.stderr}\nits output ends:\n${run.stdout.slice(-1500)}`);
  const want = check.expect(t);
  const show = `${check.tool} in ${t.kind} (exit ${o.code}):\n${o.output}`;
  assert.equal(o.code, want.code ?? 0, `exit code of ${show}`);
  for (const re of want.match) assert.match(o.output, re, show);
  // a program that gained capabilities (tcpdump's wrapper) runs in secure mode, where the
  // loader ignores LD_DEBUG_OUTPUT and writes to stderr: those lines count as well
  if (ldDebug) assertLoadedFromToolkit(`${check.tool} in ${t.kind}`, o.ld === undefined ? undefined : `${o.ld}\n${loaderLines(o.output)}`);
}

// ---- every dynamic executable of the toolkit, in the planted container ----

/**
 * `file` on every entry of bin/, then each dynamic executable run once (`--version`, stdin
 * /dev/null, 10 s at most) under LD_DEBUG=libs. The tool's own exit code does not matter
 * (not all know --version); a loader failure (127 with "error while loading shared
 * libraries") or a crash does.
 */
const EVERY_BINARY = `
cd ${TOOLKIT}/bin
file -L -F '|' -- * > ${LD_BIN}-files
cat ${LD_BIN}-files | sed 's/^/@@@file /'
while IFS='|' read -r f desc; do
  case "$desc" in *'dynamically linked'*) ;; *) continue ;; esac
  printf '@@@begin %s\\n' "$f"
  LD_DEBUG=libs LD_DEBUG_OUTPUT=${LD_BIN} timeout -k 2 10 "./$f" --version </dev/null >/dev/null 2>${LD_BIN}-stderr
  rc=$?
  grep -m3 'error while loading shared libraries' ${LD_BIN}-stderr
  printf '\\n@@@end %s %d\\n' "$f" "$rc"
  ${LD_LINES} ${LD_BIN}.* 2>/dev/null; rm -f ${LD_BIN}.*
  printf '@@@ldend %s\\n' "$f"
done < ${LD_BIN}-files
rm -f ${LD_BIN}-files ${LD_BIN}-stderr
`;

interface BinaryReport {
  files: Map<string, string>;
  runs: Map<string, Outcome>;
  code: number | null;
  stderr: string;
}

async function runEveryBinary(image: string, t: Target): Promise<BinaryReport> {
  const r = await runCrashcart(['-i', image, t.container.id, '--', 'bash', '-c', EVERY_BINARY], { timeout: 300_000 });
  dump(`${t.kind}-every-binary`, EVERY_BINARY, r);
  const files = new Map<string, string>();
  for (const m of r.stdout.matchAll(/^@@@file ([^|\n]+)\|\s*(.*)$/gm)) files.set(m[1]!, m[2]!);
  return { files, runs: parseMatrix(r.stdout), code: r.code, stderr: r.stderr };
}

/** What is wrong with the toolkit's bin/ in the planted container, and a one-line summary. */
function judgeBinaries(b: BinaryReport): { problems: string[]; summary: string } {
  const problems: string[] = [];
  const count = { dynamic: 0, static: 0, script: 0 };
  const timedOut: string[] = [];
  for (const [name, desc] of b.files) {
    const dynamic = desc.includes('dynamically linked');
    if (desc.startsWith('ELF')) {
      count[dynamic ? 'dynamic' : 'static']++;
      if (dynamic && !desc.includes(`interpreter ${TOOLKIT}/lib/ld-linux-x86-64.so.2`)) problems.push(`${name}: interpreter outside the toolkit: ${desc}`);
      if (!dynamic && !/statically linked|static-pie linked/.test(desc)) problems.push(`${name}: neither dynamic nor static: ${desc}`);
    } else if (/script/.test(desc)) {
      count.script++;
      // `file` names a script's interpreter when it is not a well-known path
      if (!new RegExp(`^a ${TOOLKIT}/bin/\\S+( -\\S+)* script`).test(desc)) problems.push(`${name}: script interpreter outside the toolkit: ${desc}`);
    } else {
      problems.push(`${name}: not an executable: ${desc}`);
    }
    if (!dynamic) continue;
    const run = b.runs.get(name);
    if (!run) {
      problems.push(`${name}: did not run`);
      continue;
    }
    if (/error while loading shared libraries/.test(run.output)) problems.push(`${name}: ${run.output.trim()}`);
    // 129-159: killed by a signal (bash's 128+N); 137 is timeout's own SIGKILL of a hung tool
    else if (run.code > 128 && run.code < 160 && run.code !== 137) problems.push(`${name}: killed by signal ${run.code - 128}`);
    if (run.code === 124 || run.code === 137) timedOut.push(name);
    try {
      assertLoadedFromToolkit(name, run.ld);
    } catch (err) {
      problems.push((err as Error).message.split('\n')[0]!);
    }
  }
  const summary = `${b.files.size} entries in bin/: ${count.dynamic} dynamic (each run), ${count.static} static, ${count.script} scripts; ` +
    `still running after 10 s (killed, not a failure): ${timedOut.join(' ') || 'none'}`;
  return { problems, summary };
}

// ---- terminal programs under tmux ----

/**
 * What each full-screen program must draw, how it is left, and (`gone`) what shows it has
 * gone, for a program that would take the next keys as its own while it ends.
 */
const SCREENS: { tool: string; start: string; screen: RegExp[]; quit: string[]; gone?: RegExp }[] = [
  { tool: 'htop', start: 'htop', screen: [/\bPID USER\b/, new RegExp(`/bin/httpd ${PORT}`), /F10Quit/], quit: ['q'] },
  { tool: 'vi', start: 'vi /proc/1/status', screen: [/^Name:\s+httpd$/m, /^"\/proc\/1\/status"/m], quit: ['Escape', ':q!', 'Enter'] },
  { tool: 'nano', start: 'nano -v /proc/1/status', screen: [/GNU nano/, /^Name:\s+httpd$/m], quit: ['C-x'] },
  {
    // a session of the toolkit's tmux: its status line, and the toolkit's shell in its window;
    // its socket (in /dev/shm) is gone once it ends ('leaves nothing behind')
    tool: 'tmux',
    start: 'tmux new-session -s mx',
    screen: [/^\[mx\] 0:bash\*/m, /^\[crashcart \S+ [^\]]*\]# ?$/m],
    quit: ['exit', 'Enter'],
    gone: /^\[exited\]$/m,
  },
];

/** tool -> undefined (drew its screen and quit) or the error; 'session' for the shell itself. */
async function runScreens(image: string, t: Target): Promise<Map<string, Error | undefined>> {
  const results = new Map<string, Error | undefined>();
  const cli = join(projectRoot(), 'bin', 'crashcart');
  // the toolkit's prompt names crashcart and the container's hostname
  const prompt = new RegExp(`crashcart[^\\n]*${t.hostname}[^\\n]*[#$] ?$`, 'm');
  let term: Terminal;
  try {
    term = await startTerminal(`m-${t.kind}`, { width: 120, height: 40 });
    await term.send(`${cliEnvWords()} ${cli} -i ${image} ${t.container.id}; echo "crashcart exited $?"`, 'Enter');
    await term.waitFor(prompt, `${t.kind}: crashcart's prompt`);
  } catch (err) {
    results.set('session', err as Error);
    return results;
  }
  for (const s of SCREENS) {
    try {
      // what the previous program drew cannot answer for this one
      await term.clear(s.screen[0]);
      await term.send(s.start, 'Enter');
      for (const re of s.screen) await term.waitFor(re, `${s.tool} in ${t.kind}`);
      for (const k of s.quit) await term.send(k);
      if (s.gone) await term.waitFor(s.gone, `${s.tool} in ${t.kind}: ending`);
      await term.send(`echo "${s.tool} exited $?"`, 'Enter');
      await term.waitFor(new RegExp(`^${s.tool} exited 0$`, 'm'), `${s.tool} in ${t.kind}: leaving it`);
      results.set(s.tool, undefined);
    } catch (err) {
      results.set(s.tool, err as Error);
      await term.send('C-c').catch(() => {});
    }
  }
  try {
    await term.send('exit 0', 'Enter');
    await term.waitFor(/^crashcart exited 0$/m, `${t.kind}: leaving crashcart`);
    results.set('session', undefined);
  } catch (err) {
    results.set('session', err as Error);
    // a program that did not quit keeps crashcart waiting: hang up on it (SIGHUP ends the
    // session, and crashcart cleans up after it)
    await term.kill();
  }
  return results;
}

// ---- the suite ----

interface KindResults {
  target: Target;
  before: HostSnapshot;
  matrix: RunResult;
  screens: Map<string, Error | undefined>;
  user?: RunResult;
  binaries?: BinaryReport;
  after?: HostSnapshot;
}

const results = new Map<TargetKind, KindResults>();
const targets: Target[] = [];
let image = '';
const timings: string[] = [];

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    timings.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

/** Like Promise.all, but throws the first failure only once every promise has settled. */
async function allSettled(promises: (Promise<unknown> | undefined)[]): Promise<void> {
  const settled = await Promise.allSettled(promises.map((p) => p ?? Promise.resolve()));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Waits for the autoclear loop devices to go, then takes the after-snapshots. */
async function settle(): Promise<void> {
  const first = results.values().next().value;
  const loops = new Set(first?.before.loops ?? []);
  await until(async () => (await snapshotHost()).loops.every((l) => loops.has(l)), { ms: 5_000, every: 50 });
  for (const r of results.values()) r.after = await snapshotHost({ pid: r.target.container.pid, rootfs: r.target.container.rootfs });
}

/** The results of one kind of container; their absence means the before hook failed. */
function ran(kind: TargetKind): KindResults {
  const r = results.get(kind);
  assert.ok(r, `nothing ran in the ${kind} container (see the before hook's error)`);
  return r;
}

describe('toolkit matrix', () => {
  before(async () => {
    if (!canRun()) return;
    const built = timed('image build', () => fullTestImage());
    built.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    // every container that starts is listed at once, so after() removes it whatever fails
    await timed('containers', () => allSettled(TARGET_KINDS.map(async (k) => {
      targets.push(await startTarget(k, { plant: k === PLANTED }));
    })));
    image = await built;
    const snaps = await Promise.all(targets.map((t) => snapshotHost({ pid: t.container.pid, rootfs: t.container.rootfs })));
    // all settle before any failure is thrown: after() must not remove a container in use
    await timed('all runs', () =>
      allSettled(targets.map(async (t, i) => {
        const planted = t.kind === PLANTED;
        const matrix = timed(`${t.kind} matrix`, () => runMatrix(image, t, CHECKS, { ldDebug: planted }));
        const screens = timed(`${t.kind} screens`, () => runScreens(image, t));
        const user = t.kind === 'nonroot' ? timed('nonroot --user', () => runMatrix(image, t, USER_CHECKS, { user: NONROOT_ID })) : undefined;
        const binaries = planted ? timed(`${t.kind} every binary`, () => runEveryBinary(image, t)) : undefined;
        await allSettled([matrix, screens, user, binaries]);
        results.set(t.kind, {
          target: t,
          before: snaps[i]!,
          matrix: await matrix,
          screens: await screens,
          ...(user ? { user: await user } : {}),
          ...(binaries ? { binaries: await binaries } : {}),
        });
      })));
    await settle();
    process.stderr.write(`toolkit matrix timings: ${timings.join(', ')}\n`);
  });

  after(async () => {
    await stopTerminals();
    for (const t of targets) await t.container.remove();
  });

  for (const kind of TARGET_KINDS) {
    describe(kind, () => {
      for (const check of CHECKS) {
        test(check.tool, (t) => {
          if (!ready(t)) return;
          const r = ran(kind);
          assertOutcome(r.matrix, check, r.target, kind === PLANTED);
        });
      }
      for (const s of SCREENS) {
        test(`${s.tool} on a terminal`, (t) => {
          if (!ready(t)) return;
          const r = ran(kind);
          assert.ok(!r.screens.get('session'), `crashcart on a terminal: ${r.screens.get('session')?.message}`);
          assert.ok(r.screens.has(s.tool), `${s.tool} never started`);
          const err = r.screens.get(s.tool);
          if (err) throw err;
        });
      }
      if (kind === 'nonroot') {
        for (const check of USER_CHECKS) {
          test(`${check.tool} as uid ${NONROOT_ID}`, (t) => {
            if (!ready(t)) return;
            const r = ran(kind);
            assertOutcome(r.user, check, r.target, false);
          });
        }
      }
      if (kind === PLANTED) {
        test('every executable is relocated or static, and runs loading only the toolkit\'s libraries', (t) => {
          if (!ready(t)) return;
          const b = ran(kind).binaries;
          assert.ok(b, 'the check did not run');
          assert.ok(b.files.size > 0, `no file output; crashcart exited ${b.code}: ${b.stderr}`);
          const { problems, summary } = judgeBinaries(b);
          t.diagnostic(summary);
          assert.deepEqual(problems, []);
        });
      }
      test('leaves nothing behind', (t) => {
        if (!ready(t)) return;
        const r = ran(kind);
        assert.ok(r.after, 'no snapshot after the runs');
        assertNoLeaks(r.before, r.after);
        // the LD_DEBUG files went to the container's /dev/shm and must be gone
        assert.deepEqual(readdirSync(`/proc/${r.target.container.pid}/root/dev/shm`), []);
      });
    });
  }
});
