// berth's connection-rate load generator: the figure no Debian tool gives.
//   connrate server PORT [SECONDS]       accept, read one request, answer, close first
//   connrate client ADDR PORT SECONDS    connect, send, read the answer, close; repeat
// The server closes first (HTTP/1.0 style) so TIME_WAIT stays on the server side
// and the client's ephemeral ports do not run out. Both ends stop by themselves:
// the client after SECONDS, the server after SECONDS (default 600) of wall time.
// Output (client): one JSON line {"connections":N,"seconds":S,"rate":R,"errors":E,
// "p50_us":..,"p99_us":..}.
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

static int server(int port, double seconds)
{
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	char buf[MSG];
	double end = now() + seconds;
	struct timeval tv = { .tv_sec = 1 };

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1024)) {
		perror("connrate server");
		return 1;
	}
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
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	char buf[MSG];
	long n = 0, errors = 0;
	float *lat = malloc(sizeof(float) * MAX_SAMPLES);
	double start, end;
	struct timeval tv = { .tv_sec = 2 };

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || !lat) {
		fprintf(stderr, "connrate client: bad address %s\n", addr);
		return 2;
	}
	memset(buf, 'b', sizeof(buf));
	start = now();
	end = start + seconds;
	while (now() < end) {
		double t0 = now();
		int s = socket(AF_INET, SOCK_STREAM, 0);
		int ok = 0;
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 && send(s, buf, MSG, MSG_NOSIGNAL) == MSG &&
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

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), argc > 3 ? atof(argv[3]) : 600);
	if (argc == 5 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: connrate server PORT [SECONDS] | connrate client ADDR PORT SECONDS\n");
	return 2;
}
