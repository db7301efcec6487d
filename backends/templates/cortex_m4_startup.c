/* Start-up of the static-order program on a Cortex-M4F (QEMU's mps2-an386, mps2_an386.ld): the
 * vector table, and a reset handler that turns the FPU on (the program is built for the hard-float
 * ABI), copies .data from flash, clears .bss, opens the semihosting console, asks the host for the
 * command line (QEMU's -semihosting-config arg=...) and calls main(argc, argv); exit() reports the
 * status to the host (semihosting SYS_EXIT). A fault prints its name and exits with status 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);  /* newlib's librdimon */
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

#define SYS_GET_CMDLINE 0x15
#define MAX_ARGS 8

static char g_cmdline[512];
static char *g_argv[MAX_ARGS + 1];

static int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ __volatile__("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* argv from the host's command line, split at spaces */
static int host_args(void)
{
    struct { char *buf; int len; } block = { g_cmdline, (int)sizeof g_cmdline - 1 };
    int argc = 0;
    char *p = g_cmdline;
    if (semihost(SYS_GET_CMDLINE, &block) != 0)
        return 0;
    g_cmdline[block.len] = '\0';
    while (*p && argc < MAX_ARGS) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        g_argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    g_argv[argc] = NULL;
    return argc;
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst;
    /* CPACR: full access to the coprocessors 10 and 11 (the FPU) before any float instruction */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ __volatile__("dsb\n\tisb" ::: "memory");
    for (dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    initialise_monitor_handles();
    exit(main(host_args(), g_argv));
}

static void fault(const char *what)
{
    fprintf(stderr, "network: %s on the Cortex-M4\n", what);
    exit(1);
}

void HardFault_Handler(void) { fault("hard fault"); }
void MemManage_Handler(void) { fault("memory management fault"); }
void BusFault_Handler(void) { fault("bus fault"); }
void UsageFault_Handler(void) { fault("usage fault"); }
void Default_Handler(void) { fault("unexpected interrupt"); }

/* the Cortex-M vector table: the initial stack pointer, then the handlers (ARMv7-M) */
__attribute__((section(".isr_vector"), used))
static void (*const g_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack,
    Reset_Handler,
    Default_Handler,     /* NMI */
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    Default_Handler,     /* SVCall */
    Default_Handler,     /* debug monitor */
    0,
    Default_Handler,     /* PendSV */
    Default_Handler,     /* SysTick */
};
