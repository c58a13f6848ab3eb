/* Versions that go into manifests, cache keys and --version. */
#ifndef CRISP_VERSION_H
#define CRISP_VERSION_H

#define CRISP_VERSION "0.1.0"
#ifndef CRISP_LLVM_VERSION
#define CRISP_LLVM_VERSION "unknown"   /* set by the build from LLVM's package version */
#endif

#endif
