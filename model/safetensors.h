/* safetensors.h: the Hugging Face safetensors format, read (mmapped, validated) and
 * written (F32, atomically).
 *
 * A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *     {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...,
 *      "__metadata__": {"KEY": "VALUE", ...}}
 * (padded with trailing spaces), then the tensor data. Offsets count from the first
 * byte after the header. st_open checks everything Hugging Face's reader checks: the
 * header length against the 100 MB limit and the file size, UTF-8, JSON syntax, the
 * type of every field, known dtypes, shape x dtype size == END - BEGIN without
 * overflow, and that the tensors, sorted by offset, tile the data exactly (no gap, no
 * overlap, nothing after the last one). Every error names the file and a byte offset
 * or the tensor and JSON key, e.g.
 *     m.safetensors: byte 8: header: invalid JSON near "}" (line 1, column 12)
 *     m.safetensors: tensor "a.weight": "data_offsets" [0, 20] span 20 bytes but ...
 *
 * Tensors are views into the mapping: valid until st_close. Little-endian data is
 * decoded byte by byte, so any host byte order and any data alignment work. */
#ifndef CRISP_SAFETENSORS_H
#define CRISP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum { ST_MAX_RANK = 8 };

/* The dtypes of safetensors whose elements are whole bytes. */
typedef enum StDtype {
  ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
  ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
} StDtype;

typedef struct StTensor {
  const char *name;            /* as in the file */
  const char *file;            /* the path st_open was given (for messages) */
  StDtype dtype;
  int rank;                    /* 0 (a scalar) .. ST_MAX_RANK */
  int64_t shape[ST_MAX_RANK];
  size_t numel;                /* product of shape (1 for a scalar) */
  size_t nbytes;               /* numel * st_dtype_size(dtype) */
  size_t file_offset;          /* absolute byte offset of the data in the file */
  const unsigned char *data;   /* nbytes bytes inside the mapping */
} StTensor;

typedef struct SafeTensors SafeTensors;

/* Maps and validates path. NULL on error, with the reason in err (cap bytes). */
SafeTensors *st_open(const char *path, char *err, size_t cap);
void st_close(SafeTensors *st);

/* Tensors in data order (0 <= i < st_count). */
int st_count(const SafeTensors *st);
const StTensor *st_tensor(const SafeTensors *st, int i);

/* The tensor called name; failing that, name without its "distilbert." or "bert."
 * prefix, or name with either prefix added. NULL when none exists. */
const StTensor *st_find(const SafeTensors *st, const char *name);

/* The value of "__metadata__".key, or NULL. */
const char *st_metadata(const SafeTensors *st, const char *key);

const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);
/* ST_DTYPE_COUNT when name is not a safetensors dtype. */
StDtype st_dtype_parse(const char *name);

/* Converts the first count elements (count must equal t->numel) of an F32, F16
 * (subnormals, infinities and NaNs exact), BF16 or F64 tensor to float. 0, or -1
 * with a message naming the file and tensor. */
int st_read_f32(const StTensor *t, float *dst, size_t count, char *err, size_t cap);

/* Exact conversions of one little-endian element. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);

/* One F32 tensor to write: numel(shape) floats at data (may be NULL if numel is 0). */
typedef struct StWriteTensor {
  const char *name;
  int rank;
  int64_t shape[ST_MAX_RANK];
  const float *data;
} StWriteTensor;

/* Writes n tensors, in the order given, to path: a temporary file beside it, fsynced,
 * then renamed over path, so path is either untouched or complete. metadata_json is
 * NULL or a JSON object of string values for "__metadata__"; "format": "pt" is added
 * when absent (transformers refuses files without it). The header is padded with
 * spaces to a multiple of 8 bytes, as Hugging Face's writer does. Names must be
 * unique, non-empty UTF-8. 0, or -1 with a message. */
int st_write(const char *path, const StWriteTensor *t, int n, const char *metadata_json,
             char *err, size_t cap);

#endif
