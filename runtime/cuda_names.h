/* cuda_names.h: names for CUDA driver and cuBLAS result codes, usable with no
 * driver or toolkit installed (the runtime declares the few driver types it needs
 * itself; tests/test_cuda_nodriver.c checks them against cuda.h when present). */
#ifndef CRISP_RT_CUDA_NAMES_H
#define CRISP_RT_CUDA_NAMES_H

/* "CUDA_ERROR_INVALID_PTX" for 218, "CUDA_SUCCESS" for 0; "CUDA_ERROR_UNKNOWN_CODE"
 * for a code the table does not know. */
const char *cu_result_name(int code);
/* "CUBLAS_STATUS_EXECUTION_FAILED" for 13, ...; "CUBLAS_STATUS_UNKNOWN_CODE" else. */
const char *cublas_status_name(int code);

#endif
