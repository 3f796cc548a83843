// SPDX-License-Identifier: GPL-2.0
/*
 * icount.c - QEMU TCG plugin: count guest instructions, kernel and user
 * mode separately, and print the counters whenever the guest executes a
 * marker instruction.
 *
 * The marker is "xchg %r15,%r15" (bytes 4d 87 ff): a no-op that no
 * compiler emits.  A guest program delimits a window by executing it
 * before and after; each execution prints one line
 *
 *	icount mark=N kernel=K user=U
 *
 * with cumulative counters, so the difference of two lines is the count of
 * the window: every instruction after the first marker up to and including
 * the second one.
 *
 * Counting is per translation block (TB): an inline add of the TB's length
 * to the kernel or the user counter, chosen by the TB's start address, runs
 * each time the TB starts.  A TB cut short by an exception (a page fault
 * on one of its instructions) is thus counted in full.  The counters are
 * plain globals: run the guest with a single vCPU (-smp 1), or they race.
 *
 * Output goes through qemu_plugin_outs(), i.e. to QEMU's log: run QEMU
 * with "-plugin icount.so -d plugin -D FILE".  The argument
 * "outfile=PATH" (-plugin icount.so,outfile=PATH) writes the lines to
 * PATH instead.
 *
 * QEMU ships no plugin header in Debian, so the few functions used are
 * declared here, as in QEMU 7.2's include/qemu/qemu-plugin.h (plugin API
 * version 1).
 *
 * Build: cc -shared -fPIC -O2 -Wall -Wextra -o icount.so icount.c
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- the QEMU plugin API subset (QEMU 7.2, API version 1) ---- */

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;

typedef struct qemu_info_t {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
	union {
		struct {
			int smp_vcpus;
			int max_vcpus;
		} system;
	};
} qemu_info_t;

struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags {
	QEMU_PLUGIN_CB_NO_REGS,
	QEMU_PLUGIN_CB_R_REGS,
	QEMU_PLUGIN_CB_RW_REGS,
};

enum qemu_plugin_op {
	QEMU_PLUGIN_INLINE_ADD_U64,
};

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index,
					    void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
					       struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
					    qemu_plugin_vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags flags,
					    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
						 size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* ---- the plugin ---- */

/* x86-64: the kernel half of the address space (canonical upper half). */
#define KERNEL_START 0xffff800000000000ULL

static const uint8_t marker[] = { 0x4d, 0x87, 0xff };	/* xchg %r15,%r15 */

static uint64_t kernel_insns, user_insns, marks;
static FILE *outfile;

static void emit(const char *line)
{
	if (outfile) {
		fputs(line, outfile);
		fflush(outfile);
	} else {
		qemu_plugin_outs(line);
	}
}

/*
 * The marker executed.  The inline add of its TB already counted the whole
 * TB, including the instructions after the marker; @udata holds how many
 * those are, so the line reports the count up to and including the marker.
 */
static void marker_exec(unsigned int vcpu_index, void *udata)
{
	uint64_t after = (uintptr_t)udata;
	char line[128];

	(void)vcpu_index;
	snprintf(line, sizeof(line),
		 "icount mark=%" PRIu64 " kernel=%" PRIu64 " user=%" PRIu64 "\n",
		 ++marks, kernel_insns, user_insns - after);
	emit(line);
}

static bool is_marker(const struct qemu_plugin_insn *insn)
{
	return qemu_plugin_insn_size(insn) == sizeof(marker) &&
	       !memcmp(qemu_plugin_insn_data(insn), marker, sizeof(marker));
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t i, n = qemu_plugin_tb_n_insns(tb);
	bool kernel = qemu_plugin_tb_vaddr(tb) >= KERNEL_START;

	(void)id;
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
						 kernel ? &kernel_insns : &user_insns,
						 n);
	if (kernel)
		return;
	/* The marker is a user-mode thing; kernel TBs are not searched. */
	for (i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

		if (is_marker(insn))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, marker_exec,
							       QEMU_PLUGIN_CB_NO_REGS,
							       (void *)(uintptr_t)(n - 1 - i));
	}
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
	char line[128];

	(void)id;
	(void)udata;
	snprintf(line, sizeof(line),
		 "icount exit marks=%" PRIu64 " kernel=%" PRIu64 " user=%" PRIu64 "\n",
		 marks, kernel_insns, user_insns);
	emit(line);
	if (outfile)
		fclose(outfile);
	outfile = NULL;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	if (strcmp(info->target_name, "x86_64")) {
		fprintf(stderr, "icount: x86_64 guests only, not %s\n",
			info->target_name);
		return -1;
	}
	if (info->system_emulation && info->system.smp_vcpus != 1)
		fprintf(stderr, "icount: %d vCPUs: the counters will race, use one\n",
			info->system.smp_vcpus);
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "outfile=", 8)) {
			outfile = fopen(argv[i] + 8, "w");
			if (!outfile) {
				perror(argv[i] + 8);
				return -1;
			}
		} else {
			fprintf(stderr, "icount: unknown argument %s\n", argv[i]);
			return -1;
		}
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
