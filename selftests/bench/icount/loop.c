// SPDX-License-Identifier: GPL-2.0
/*
 * loop.c - known-count guest program for the icount plugin's self-check.
 *
 * Usage: loop [ITERATIONS]   (default 10000000)
 *
 * Executes the marker (xchg %r15,%r15), then
 *
 *	mov  ITERATIONS,%rcx            1 instruction
 *   1:	add  $1,%rax                    \
 *	dec  %rcx                        } 3 per iteration
 *	jnz  1b                         /
 *	xchg %r15,%r15                  the second marker
 *
 * so the window between the two marker lines (everything after the first
 * marker, up to and including the second) is exactly 3 * ITERATIONS + 2
 * user-mode instructions.  The block is aligned to 64 bytes so that it
 * lies in one page, already mapped when the first marker runs, and it
 * touches no memory: no fault can cut a translation block short inside
 * the window (the plugin counts a cut-short block in full).
 *
 * Prints "loop iterations=N expected_user=M" for scripts/icount.sh check.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000000;
	unsigned long acc = 0;

	if (!n) {
		fprintf(stderr, "loop: ITERATIONS must be positive\n");
		return 2;
	}
	asm volatile(".p2align 6\n\t"
		     "xchg %%r15, %%r15\n\t"
		     "mov %1, %%rcx\n"
		     "1:\n\t"
		     "add $1, %0\n\t"
		     "dec %%rcx\n\t"
		     "jnz 1b\n\t"
		     "xchg %%r15, %%r15"
		     : "+r" (acc)
		     : "r" (n)
		     : "rcx", "r15", "cc");
	if (acc != n) {
		fprintf(stderr, "loop: ran %lu iterations, not %lu\n", acc, n);
		return 1;
	}
	printf("loop iterations=%lu expected_user=%lu\n", n, 3 * n + 2);
	return 0;
}
