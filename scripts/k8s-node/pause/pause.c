/*
 * pause: the process that holds a pod's namespaces (the sandbox
 * container's only process). It waits for SIGINT or SIGTERM and exits 0,
 * and reaps every child it inherits as PID 1 of the pod's PID namespace.
 * Built static (gcc -static) into a FROM scratch image by
 * scripts/k8s-node.sh, so no pause image has to be pulled.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		puts("pause (dpcnn k8s-node) 3.10");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not PID 1\n");

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = stop;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0) {
		perror("pause: sigaction SIGCHLD");
		return 2;
	}
	for (;;)
		pause();
	fprintf(stderr, "pause: error: infinite loop terminated\n");
	return 42;
}
