/* LD_PRELOAD shim for the fan-out benchmark's Janus peer: Janus 1.1.2 skips every IFF_LOOPBACK interface when it
 * gathers ICE candidates (src/ice.c, janus_ice_setup_local), so on a loopback-only test it offers none that work.
 * This clears IFF_LOOPBACK on "lo"; with ice_enforce_list = "lo" Janus then offers exactly 127.0.0.1.
 * Built by the bench: gcc -shared -fPIC -o libunloop.so unloop.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>

int getifaddrs(struct ifaddrs **ifap) {
	static int (*real)(struct ifaddrs **) = NULL;
	if (!real)
		real = dlsym(RTLD_NEXT, "getifaddrs");
	int rc = real(ifap);
	if (rc == 0)
		for (struct ifaddrs *i = *ifap; i; i = i->ifa_next)
			if (i->ifa_name && !strcmp(i->ifa_name, "lo"))
				i->ifa_flags &= ~IFF_LOOPBACK;
	return rc;
}
