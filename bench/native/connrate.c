// berth's connection-rate load generator: the figure no Debian tool gives.
//   connrate server PORT [SECONDS [BIND]]    accept, read one request, answer, close first
//   connrate client ADDR PORT SECONDS        connect, send, read the answer, close; repeat
//   connrate rrserver PORT [SECONDS [BIND]]  accept, echo 64-byte messages until the peer closes
//   connrate rr ADDR PORT SECONDS            one connection, 64 bytes each way, back to back
// ADDR and BIND are IPv4 or IPv6 addresses (BIND default 0.0.0.0; "::" listens
// on IPv6 only). The rr mode is the request/response figure for IPv6, which
// Debian 12's sockperf (3.7) cannot send; TCP_NODELAY on both ends, as sockperf.
// The server closes first (HTTP/1.0 style) so TIME_WAIT stays on the server side
// and the client's ephemeral ports do not run out. Both ends stop by themselves:
// the client after SECONDS, the server after SECONDS (default 600) of wall time.
// Output (client): one JSON line {"connections":N,"seconds":S,"rate":R,"errors":E,
// "p50_us":..,"p99_us":..} (rr: "transactions" instead of "connections").
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAX_SAMPLES 2000000

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

// ADDR:PORT of either family into *ss; its length, 0 for a bad address
static socklen_t sockaddr_of(const char *addr, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':')) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		return inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1 ? sizeof(*a6) : 0;
	}
	a4->sin_family = AF_INET;
	a4->sin_port = htons(port);
	return inet_pton(AF_INET, addr, &a4->sin_addr) == 1 ? sizeof(*a4) : 0;
}

static int listener(int port, const char *bind_addr)
{
	struct sockaddr_storage sa;
	socklen_t len = sockaddr_of(bind_addr, port, &sa);
	int one = 1, ls;

	if (!len) {
		fprintf(stderr, "connrate server: bad address %s\n", bind_addr);
		return -1;
	}
	ls = socket(sa.ss_family, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&sa, len) || listen(ls, 1024)) {
		perror("connrate server");
		close(ls);
		return -1;
	}
	return ls;
}

static int server(int port, double seconds, const char *bind_addr)
{
	int ls = listener(port, bind_addr);
	char buf[MSG];
	double end = now() + seconds;
	struct timeval tv = { .tv_sec = 1 };

	if (ls < 0)
		return 1;
	setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	printf("ready\n");
	fflush(stdout);
	while (now() < end) {
		int s = accept(ls, NULL, NULL);
		if (s < 0)
			continue;
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (recv(s, buf, MSG, MSG_WAITALL) == MSG)
			send(s, buf, MSG, MSG_NOSIGNAL);
		close(s);
	}
	return 0;
}

static int client(const char *addr, int port, double seconds)
{
	struct sockaddr_storage sa;
	socklen_t salen = sockaddr_of(addr, port, &sa);
	char buf[MSG];
	long n = 0, errors = 0;
	float *lat = malloc(sizeof(float) * MAX_SAMPLES);
	double start, end;
	struct timeval tv = { .tv_sec = 2 };

	if (!salen || !lat) {
		fprintf(stderr, "connrate client: bad address %s\n", addr);
		return 2;
	}
	memset(buf, 'b', sizeof(buf));
	start = now();
	end = start + seconds;
	while (now() < end) {
		double t0 = now();
		int s = socket(sa.ss_family, SOCK_STREAM, 0);
		int ok = 0;
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(s, (struct sockaddr *)&sa, salen) == 0 && send(s, buf, MSG, MSG_NOSIGNAL) == MSG &&
		    recv(s, buf, MSG, MSG_WAITALL) == MSG && recv(s, buf, 1, 0) == 0)
			ok = 1;
		close(s);
		if (ok) {
			if (n < MAX_SAMPLES)
				lat[n] = (float)((now() - t0) * 1e6);
			n++;
		} else {
			errors++;
			if (errors > 1000 && errors > n)
				break;
		}
	}
	double took = now() - start;
	long k = n < MAX_SAMPLES ? n : MAX_SAMPLES;
	qsort(lat, k, sizeof(float), cmp);
	printf("{\"connections\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"errors\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", n, took,
	       n / took, errors, k ? lat[k / 2] : 0.0, k ? lat[(k * 99) / 100] : 0.0);
	free(lat);
	return n > 0 ? 0 : 1;
}

// echo 64-byte messages on one connection at a time until the peer closes
static int rrserver(int port, double seconds, const char *bind_addr)
{
	int one = 1, ls = listener(port, bind_addr);
	char buf[MSG];
	double end = now() + seconds;
	struct timeval tv = { .tv_sec = 1 };

	if (ls < 0)
		return 1;
	setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (now() < end) {
		int s = accept(ls, NULL, NULL);
		if (s < 0)
			continue;
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (now() < end && recv(s, buf, MSG, MSG_WAITALL) == MSG && send(s, buf, MSG, MSG_NOSIGNAL) == MSG)
			;
		close(s);
	}
	return 0;
}

// one connection, request/response back to back for SECONDS
static int rr(const char *addr, int port, double seconds)
{
	struct sockaddr_storage sa;
	socklen_t salen = sockaddr_of(addr, port, &sa);
	char buf[MSG];
	long n = 0, errors = 0;
	float *lat = malloc(sizeof(float) * MAX_SAMPLES);
	double start, end;
	struct timeval tv = { .tv_sec = 2 };
	int one = 1, s;

	if (!salen || !lat) {
		fprintf(stderr, "connrate rr: bad address %s\n", addr);
		return 2;
	}
	s = socket(sa.ss_family, SOCK_STREAM, 0);
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, salen)) {
		perror("connrate rr: connect");
		return 1;
	}
	memset(buf, 'r', sizeof(buf));
	start = now();
	end = start + seconds;
	while (now() < end) {
		double t0 = now();
		if (send(s, buf, MSG, MSG_NOSIGNAL) != MSG || recv(s, buf, MSG, MSG_WAITALL) != MSG) {
			errors++;
			break;
		}
		if (n < MAX_SAMPLES)
			lat[n] = (float)((now() - t0) * 1e6);
		n++;
	}
	close(s);
	double took = now() - start;
	long k = n < MAX_SAMPLES ? n : MAX_SAMPLES;
	qsort(lat, k, sizeof(float), cmp);
	printf("{\"transactions\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"errors\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", n, took,
	       n / took, errors, k ? lat[k / 2] : 0.0, k ? lat[(k * 99) / 100] : 0.0);
	free(lat);
	return n > 0 && !errors ? 0 : 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && argc <= 5 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), argc > 3 ? atof(argv[3]) : 600, argc > 4 ? argv[4] : "0.0.0.0");
	if (argc >= 3 && argc <= 5 && !strcmp(argv[1], "rrserver"))
		return rrserver(atoi(argv[2]), argc > 3 ? atof(argv[3]) : 600, argc > 4 ? argv[4] : "0.0.0.0");
	if (argc == 5 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "rr"))
		return rr(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: connrate server PORT [SECONDS [BIND]] | connrate client ADDR PORT SECONDS\n"
			"       connrate rrserver PORT [SECONDS [BIND]] | connrate rr ADDR PORT SECONDS\n");
	return 2;
}
