// TensorFlow CPU ops for training the Melody RNN networks faster: a whole LSTM
// layer's recurrence (forward and backward), the same for the attention layer,
// and dropout.
//
// Why the recurrent ops: on a CPU, TensorFlow's own loop pays a few microseconds
// of dispatch for every small op of every step (about 20 per LSTM layer and step,
// 30 for the attention cell), and its element-wise math is a dozen passes over
// memory. Here each LSTM step is one Eigen GEMM plus one fused pass, and the batch
// is cut into independent row chunks that run on their own threads (the recurrence
// never mixes rows), the input projection included. What is not sequential in the gradient (the weight gradients, sums
// over every step, and the inputs' gradient) stays in TensorFlow as big matmuls;
// see kernels.py.
//
// Gate layout is Keras': columns [i, f, c, o] of width H, sigmoid for i, f, o,
// tanh for c and for the cell output. Sequences are batch-major ([batch, time,
// ...], Keras' layout), so layers pass them on without transposes; a step reads
// its rows with a stride.
//
// Why the dropout op: TensorFlow draws dropout's random numbers with Philox, 32
// bits each, on one core; for a [64, 430, 128] activation that is 19 ms, about
// half a layer's recurrence. Here 16 bits decide each element, drawn with
// splitmix64 from a counter (seed, batch row, position: results do not depend
// on the number of threads), and the rows are split over threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using MatrixMap = Eigen::Map<Matrix>;
using Stride = Eigen::OuterStride<>;

// One step's rows [begin, begin + rows) of a [batch, steps, cols] tensor.
class Steps {
 public:
  Steps(int64_t begin, int64_t rows, int64_t steps) : begin_(begin), rows_(rows), steps_(steps) {}

  Eigen::Map<Matrix, 0, Stride> at(float* data, int64_t t, int64_t cols) const {
    return {data + (begin_ * steps_ + t) * cols, rows_, cols, Stride(steps_ * cols)};
  }
  Eigen::Map<const Matrix, 0, Stride> at(const float* data, int64_t t, int64_t cols) const {
    return {data + (begin_ * steps_ + t) * cols, rows_, cols, Stride(steps_ * cols)};
  }

 private:
  int64_t begin_, rows_, steps_;
};

// Runs fn(row_begin, row_end) for up to `threads` contiguous chunks of `rows` rows.
template <typename Fn>
void ForEachRowChunk(int64_t rows, int threads, Fn fn) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, rows));
  const int64_t size = (rows + chunks - 1) / chunks;
  std::vector<std::thread> workers;
  for (int64_t begin = size; begin < rows; begin += size) {
    workers.emplace_back(fn, begin, std::min(rows, begin + size));
  }
  fn(0, std::min(rows, size));
  for (auto& worker : workers) worker.join();
}

bool IsMatrix(const Tensor& tensor, int64_t rows, int64_t cols) {
  return tensor.dims() == 2 && tensor.dim_size(0) == rows && tensor.dim_size(1) == cols;
}

bool IsSequence(const Tensor& tensor, int64_t batch, int64_t steps, int64_t cols) {
  return tensor.dims() == 3 && tensor.dim_size(0) == batch && tensor.dim_size(1) == steps &&
         tensor.dim_size(2) == cols;
}

}  // namespace

REGISTER_OP("MelodyLstmSequence")
    .Input("inputs: float")            // [B, T, F]
    .Input("kernel: float")            // [F, 4H]
    .Input("recurrent_kernel: float")  // [H, 4H]
    .Input("bias: float")              // [4H]
    .Input("h0: float")                // [B, H]
    .Input("c0: float")                // [B, H]
    .Output("h: float")                // [B, T, H]: the layer's output
    .Output("h_prev: float")           // [B, T, H]: h one step late (h0 first), for gradients
    .Output("c: float")                // [B, T, H]
    .Output("gates: float")            // [B, T, 4H], activated
    .Output("h_last: float")           // [B, H]
    .Output("c_last: float")           // [B, H]
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle inputs, recurrent;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &inputs));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &recurrent));
      DimensionHandle batch = c->Dim(inputs, 0), time = c->Dim(inputs, 1);
      DimensionHandle units = c->Dim(recurrent, 0), width = c->Dim(recurrent, 1);
      ShapeHandle sequence = c->MakeShape({batch, time, units});
      c->set_output(0, sequence);
      c->set_output(1, sequence);
      c->set_output(2, sequence);
      c->set_output(3, c->MakeShape({batch, time, width}));
      c->set_output(4, c->MakeShape({batch, units}));
      c->set_output(5, c->MakeShape({batch, units}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("MelodyLstmSequenceGrad")
    .Input("recurrent_kernel: float")  // [H, 4H]
    .Input("c0: float")                // [B, H]
    .Input("c: float")                 // [B, T, H] from the forward op
    .Input("gates: float")             // [B, T, 4H] from the forward op
    .Input("d_h: float")               // [B, T, H]: gradient reaching every step's h from above
    .Input("d_h_last: float")          // [B, H]
    .Input("d_c_last: float")          // [B, H]
    .Output("d_gates: float")          // [B, T, 4H]: gradient of the gate pre-activations
    .Output("d_bias: float")           // [4H]: d_gates summed over batch and time
    .Output("d_h0: float")
    .Output("d_c0: float")
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle recurrent;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &recurrent));
      c->set_output(0, c->input(3));
      c->set_output(1, c->Vector(c->Dim(recurrent, 1)));
      c->set_output(2, c->input(1));
      c->set_output(3, c->input(1));
      return tensorflow::OkStatus();
    });

class MelodyLstmSequenceOp : public OpKernel {
 public:
  explicit MelodyLstmSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& inputs = context->input(0);
    const Tensor& kernel_in = context->input(1);
    const Tensor& recurrent = context->input(2);
    const Tensor& bias_in = context->input(3);
    const Tensor& h0 = context->input(4);
    const Tensor& c0 = context->input(5);
    OP_REQUIRES(context, inputs.dims() == 3, InvalidArgument("inputs must be [batch, time, features]"));
    const int64_t batch = inputs.dim_size(0), steps = inputs.dim_size(1);
    const int64_t features = inputs.dim_size(2), units = recurrent.dim_size(0), width = 4 * units;
    OP_REQUIRES(context, IsMatrix(recurrent, units, width),
                InvalidArgument("recurrent kernel must be [units, 4 * units]"));
    OP_REQUIRES(context, IsMatrix(kernel_in, features, width),
                InvalidArgument("kernel must be [features, 4 * units]"));
    OP_REQUIRES(context, bias_in.dims() == 1 && bias_in.dim_size(0) == width,
                InvalidArgument("bias must be [4 * units]"));
    OP_REQUIRES(context, IsMatrix(h0, batch, units) && IsMatrix(c0, batch, units),
                InvalidArgument("initial states must be [batch, units]"));

    Tensor *h_out, *h_prev_out, *c_out, *gates_out, *h_last, *c_last;
    const TensorShape sequence({batch, steps, units});
    OP_REQUIRES_OK(context, context->allocate_output(0, sequence, &h_out));
    OP_REQUIRES_OK(context, context->allocate_output(1, sequence, &h_prev_out));
    OP_REQUIRES_OK(context, context->allocate_output(2, sequence, &c_out));
    OP_REQUIRES_OK(context,
                   context->allocate_output(3, TensorShape({batch, steps, width}), &gates_out));
    OP_REQUIRES_OK(context, context->allocate_output(4, h0.shape(), &h_last));
    OP_REQUIRES_OK(context, context->allocate_output(5, c0.shape(), &c_last));

    const float* x = inputs.flat<float>().data();
    ConstMatrixMap kernel(kernel_in.flat<float>().data(), features, width);
    ConstMatrixMap recurrent_kernel(recurrent.flat<float>().data(), units, width);
    const Eigen::Map<const Eigen::RowVectorXf> bias(bias_in.flat<float>().data(), width);
    float* h_all = h_out->flat<float>().data();
    float* h_prev_all = h_prev_out->flat<float>().data();
    float* c_all = c_out->flat<float>().data();
    float* gates_all = gates_out->flat<float>().data();

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix h = ConstMatrixMap(h0.flat<float>().data() + begin * units, rows, units);
      Matrix c = ConstMatrixMap(c0.flat<float>().data() + begin * units, rows, units);
      Matrix z(rows, width);
      // The input projection of all of this chunk's steps at once (its rows of x are
      // contiguous), written where the gates go: one big GEMM instead of a thin one per
      // step, which for one-hot inputs (a few dozen features) ran at half speed.
      MatrixMap projected(gates_all + begin * steps * width, rows * steps, width);
      projected.noalias() = ConstMatrixMap(x + begin * steps * features, rows * steps, features) * kernel;
      projected.rowwise() += bias;
      for (int64_t t = 0; t < steps; ++t) {
        step.at(h_prev_all, t, units) = h;
        z.noalias() = h * recurrent_kernel;
        for (int64_t row = 0; row < rows; ++row) {
          // One pass per row over contiguous memory (Eigen expressions over the strided
          // rows were slower): activations, then the cell.
          const int64_t at = (begin + row) * steps + t;
          Eigen::Map<Eigen::ArrayXf> gates(gates_all + at * width, width);
          gates += z.row(row).transpose().array();  // the input projection was already there
          gates.head(2 * units) = gates.head(2 * units).logistic();
          gates.segment(2 * units, units) = gates.segment(2 * units, units).tanh();
          gates.tail(units) = gates.tail(units).logistic();
          float* c_row = c.data() + row * units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            c_row[k] = gates[units + k] * c_row[k] + gates[k] * gates[2 * units + k];
          }
          Eigen::Map<Eigen::ArrayXf> h_row(h.data() + row * units, units);
          h_row = gates.tail(units) * Eigen::Map<const Eigen::ArrayXf>(c_row, units).tanh();
          Eigen::Map<Eigen::ArrayXf>(c_all + at * units, units) =
              Eigen::Map<const Eigen::ArrayXf>(c_row, units);
          Eigen::Map<Eigen::ArrayXf>(h_all + at * units, units) = h_row;
        }
      }
      MatrixMap(h_last->flat<float>().data() + begin * units, rows, units) = h;
      MatrixMap(c_last->flat<float>().data() + begin * units, rows, units) = c;
    });
  }

 private:
  int num_threads_;
};

class MelodyLstmSequenceGradOp : public OpKernel {
 public:
  explicit MelodyLstmSequenceGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& recurrent = context->input(0);
    const Tensor& c0 = context->input(1);
    const Tensor& c_seq = context->input(2);
    const Tensor& gates_seq = context->input(3);
    const Tensor& d_h_seq = context->input(4);
    const Tensor& d_h_last = context->input(5);
    const Tensor& d_c_last = context->input(6);
    OP_REQUIRES(context, gates_seq.dims() == 3, InvalidArgument("gates must be [batch, time, 4 * units]"));
    const int64_t batch = gates_seq.dim_size(0), steps = gates_seq.dim_size(1);
    const int64_t units = recurrent.dim_size(0), width = 4 * units;
    OP_REQUIRES(context, IsMatrix(recurrent, units, width) && gates_seq.dim_size(2) == width,
                InvalidArgument("recurrent kernel must be [units, 4 * units], as the gates"));
    OP_REQUIRES(context,
                IsSequence(c_seq, batch, steps, units) && IsSequence(d_h_seq, batch, steps, units),
                InvalidArgument("c and d_h must be [batch, time, units]"));
    OP_REQUIRES(context,
                IsMatrix(c0, batch, units) && IsMatrix(d_h_last, batch, units) &&
                    IsMatrix(d_c_last, batch, units),
                InvalidArgument("c0 and the final-state gradients must be [batch, units]"));

    Tensor *d_gates, *d_bias, *d_h0, *d_c0;
    OP_REQUIRES_OK(context, context->allocate_output(0, gates_seq.shape(), &d_gates));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({width}), &d_bias));
    OP_REQUIRES_OK(context, context->allocate_output(2, c0.shape(), &d_h0));
    OP_REQUIRES_OK(context, context->allocate_output(3, c0.shape(), &d_c0));
    // Each chunk sums its own rows' bias gradient; the chunks' sums are added at the end.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads_, batch));
    const int64_t chunk_rows = std::max<int64_t>(1, (batch + chunks - 1) / chunks);
    Matrix bias_sums = Matrix::Zero(chunks, width);

    // The transpose kept row-major, so that each step's GEMM streams rows.
    const Matrix recurrent_t =
        ConstMatrixMap(recurrent.flat<float>().data(), units, width).transpose();
    const float* c_all = c_seq.flat<float>().data();
    const float* gates_all = gates_seq.flat<float>().data();
    const float* d_h_all = d_h_seq.flat<float>().data();
    float* dz_all = d_gates->flat<float>().data();

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix dh_next = ConstMatrixMap(d_h_last.flat<float>().data() + begin * units, rows, units);
      Matrix dc = ConstMatrixMap(d_c_last.flat<float>().data() + begin * units, rows, units);
      Eigen::ArrayXf tanh_c(units);
      Eigen::RowVectorXf bias_sum = Eigen::RowVectorXf::Zero(width);
      for (int64_t t = steps - 1; t >= 0; --t) {
        // One fused pass per row (Eigen expressions over the strided rows took half as
        // long again): the cell's gradient, then the gate pre-activations'.
        for (int64_t row = 0; row < rows; ++row) {
          const int64_t at = (begin + row) * steps + t;
          const float* gates = gates_all + at * width;
          const float* c = c_all + at * units;
          const float* c_prev = t > 0 ? c - units : c0.flat<float>().data() + (begin + row) * units;
          const float* d_h_above = d_h_all + at * units;
          const float* dh_carried = dh_next.data() + row * units;
          float* dc_row = dc.data() + row * units;
          float* dz = dz_all + at * width;
          float* bias = bias_sum.data();
          tanh_c = Eigen::Map<const Eigen::ArrayXf>(c, units).tanh();
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            const float i = gates[k], f = gates[units + k];
            const float g = gates[2 * units + k], o = gates[3 * units + k];
            const float dh = d_h_above[k] + dh_carried[k];
            const float dc_k = dc_row[k] + dh * o * (1.0f - tanh_c[k] * tanh_c[k]);
            const float dz_i = dc_k * g * i * (1.0f - i);
            const float dz_f = dc_k * c_prev[k] * f * (1.0f - f);
            const float dz_g = dc_k * i * (1.0f - g * g);
            const float dz_o = dh * tanh_c[k] * o * (1.0f - o);
            dz[k] = dz_i;
            dz[units + k] = dz_f;
            dz[2 * units + k] = dz_g;
            dz[3 * units + k] = dz_o;
            bias[k] += dz_i;
            bias[units + k] += dz_f;
            bias[2 * units + k] += dz_g;
            bias[3 * units + k] += dz_o;
            dc_row[k] = dc_k * f;
          }
        }
        dh_next.noalias() = step.at(dz_all, t, width) * recurrent_t;
      }
      bias_sums.row(begin / chunk_rows) = bias_sum;
      MatrixMap(d_h0->flat<float>().data() + begin * units, rows, units) = dh_next;
      MatrixMap(d_c0->flat<float>().data() + begin * units, rows, units) = dc;
    });
    Eigen::Map<Eigen::RowVectorXf>(d_bias->flat<float>().data(), width) = bias_sums.colwise().sum();
  }

 private:
  int num_threads_;
};

// ---------------------------------------------------------------------------------
// The attention LSTM cell (network.AttentionLSTMCell, Magenta's AttentionCellWrapper
// around an LSTM) over a whole sequence, from zero states. Per step t and row:
//   xp = x_proj[t] + a[t-1] @ P_a            (x_proj = x @ P_x + bias, from TensorFlow)
//   LSTM(xp, h, c) -> gates, c', h'
//   q = [c', h'] @ Q + q_bias
//   over the window j = t-W .. t-1 (zeros before the start, which still take part in
//   the softmax): e_j = tanh(feat_j + q), alpha = softmax(e_j . v), a[t] = sum alpha_j out_j
//   out[t] = [h', a[t]] @ O + o_bias;  feat[t] = out[t] @ attn_w
// The backward op returns the gradients of the step-wise pre-activations (dz, d_xp,
// d_q, d_out, d_feat) and of v; the weight gradients are big matmuls in TensorFlow.

REGISTER_OP("MelodyAttentionSequence")
    .Input("x_proj: float")          // [B, T, F]
    .Input("projection_attn: float")  // [A, F]
    .Input("kernel: float")          // [F, 4U]
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("bias: float")            // [4U]
    .Input("attn_w: float")          // [A, A]
    .Input("attn_v: float")          // [A]
    .Input("query_kernel: float")    // [2U, A]
    .Input("query_bias: float")      // [A]
    .Input("output_kernel: float")   // [U + A, A]
    .Input("output_bias: float")     // [A]
    .Output("out: float")            // [B, T, A]: the layer's output
    .Output("feat: float")           // [B, T, A]
    .Output("xp: float")             // [B, T, F]
    .Output("attns_prev: float")     // [B, T, A]: a[t-1]
    .Output("h_prev: float")         // [B, T, U]
    .Output("c: float")              // [B, T, U]
    .Output("h: float")              // [B, T, U]
    .Output("gates: float")          // [B, T, 4U], activated
    .Output("attns: float")          // [B, T, A]
    .Output("query: float")          // [B, T, A]
    .Output("alpha: float")          // [B, T, W]
    .Attr("attn_length: int")
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, recurrent;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &recurrent));
      int window;
      TF_RETURN_IF_ERROR(c->GetAttr("attn_length", &window));
      DimensionHandle batch = c->Dim(x, 0), time = c->Dim(x, 1), units = c->Dim(recurrent, 0);
      ShapeHandle per_unit = c->MakeShape({batch, time, units});
      for (int index : {0, 1, 3, 8, 9}) c->set_output(index, per_unit);  // A == U
      c->set_output(2, c->input(0));
      for (int index : {4, 5, 6}) c->set_output(index, per_unit);
      c->set_output(7, c->MakeShape({batch, time, c->Dim(recurrent, 1)}));
      c->set_output(10, c->MakeShape({batch, time, window}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("MelodyAttentionSequenceGrad")
    .Input("projection_attn: float")  // [A, F]
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("attn_w: float")
    .Input("attn_v: float")
    .Input("query_kernel: float")
    .Input("output_kernel: float")
    .Input("out: float")             // the forward op's outputs ...
    .Input("feat: float")
    .Input("c: float")
    .Input("gates: float")
    .Input("query: float")
    .Input("alpha: float")
    .Input("d_out_above: float")     // [B, T, A]: gradient reaching every output from above
    .Output("d_gates: float")        // [B, T, 4U]
    .Output("d_xp: float")           // [B, T, F]
    .Output("d_query: float")        // [B, T, A]
    .Output("d_out: float")          // [B, T, A]: total, window and features included
    .Output("d_feat: float")         // [B, T, A]
    .Output("d_attn_v: float")       // [A]
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle projection;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &projection));
      ShapeHandle out = c->input(7);
      c->set_output(0, c->input(10));
      DimensionHandle batch = c->Dim(out, 0), time = c->Dim(out, 1);
      c->set_output(1, c->MakeShape({batch, time, c->Dim(projection, 1)}));
      c->set_output(2, out);
      c->set_output(3, out);
      c->set_output(4, out);
      c->set_output(5, c->input(4));
      return tensorflow::OkStatus();
    });

namespace {

using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

struct AttentionWeights {
  int64_t features, units, window;
  ConstMatrixMap projection_attn, kernel, recurrent, attn_w, query, output;
  Eigen::Map<const RowVector> bias, v, query_bias, output_bias;
};

}  // namespace

class MelodyAttentionSequenceOp : public OpKernel {
 public:
  explicit MelodyAttentionSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("attn_length", &window_));
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
    OP_REQUIRES(context, window_ >= 1, InvalidArgument("attn_length must be at least 1"));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x_proj = context->input(0);
    OP_REQUIRES(context, x_proj.dims() == 3, InvalidArgument("x_proj must be [batch, time, features]"));
    const int64_t batch = x_proj.dim_size(0), steps = x_proj.dim_size(1);
    const int64_t features = x_proj.dim_size(2);
    const Tensor& recurrent = context->input(3);
    OP_REQUIRES(context, recurrent.dims() == 2 && recurrent.dim_size(1) == 4 * recurrent.dim_size(0),
                InvalidArgument("recurrent kernel must be [units, 4 * units]"));
    const int64_t units = recurrent.dim_size(0), width = 4 * units, window = window_;
    // Inputs 1 to 10: rows and columns (0: a vector) of each weight.
    const int64_t expected[10][2] = {{units, features},  {features, width}, {units, width},
                                     {width, 0},         {units, units},    {units, 0},
                                     {2 * units, units}, {units, 0},        {2 * units, units},
                                     {units, 0}};
    for (int index = 1; index <= 10; ++index) {
      const Tensor& tensor = context->input(index);
      const int64_t rows = expected[index - 1][0], cols = expected[index - 1][1];
      const bool ok = cols == 0 ? tensor.dims() == 1 && tensor.dim_size(0) == rows
                                : IsMatrix(tensor, rows, cols);
      OP_REQUIRES(context, ok,
                  InvalidArgument("attention weight ", index, " has shape ",
                                  tensor.shape().DebugString(), "; expected [", rows,
                                  cols ? ", " + std::to_string(cols) : std::string(), "]"));
    }
    const AttentionWeights w{
        features, units, window,
        ConstMatrixMap(context->input(1).flat<float>().data(), units, features),
        ConstMatrixMap(context->input(2).flat<float>().data(), features, width),
        ConstMatrixMap(recurrent.flat<float>().data(), units, width),
        ConstMatrixMap(context->input(5).flat<float>().data(), units, units),
        ConstMatrixMap(context->input(7).flat<float>().data(), 2 * units, units),
        ConstMatrixMap(context->input(9).flat<float>().data(), 2 * units, units),
        Eigen::Map<const RowVector>(context->input(4).flat<float>().data(), width),
        Eigen::Map<const RowVector>(context->input(6).flat<float>().data(), units),
        Eigen::Map<const RowVector>(context->input(8).flat<float>().data(), units),
        Eigen::Map<const RowVector>(context->input(10).flat<float>().data(), units)};

    float* out[11];
    const int64_t widths[11] = {units, units, features, units, units, units,
                                units, width, units,    units, window};
    for (int index = 0; index < 11; ++index) {
      Tensor* tensor;
      OP_REQUIRES_OK(context, context->allocate_output(
                                  index, TensorShape({batch, steps, widths[index]}), &tensor));
      out[index] = tensor->flat<float>().data();
    }
    float *out_all = out[0], *feat_all = out[1], *xp_all = out[2], *a_prev_all = out[3],
          *h_prev_all = out[4], *c_all = out[5], *h_all = out[6], *gates_all = out[7],
          *a_all = out[8], *q_all = out[9], *alpha_all = out[10];
    const float* x_all = x_proj.flat<float>().data();

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix h = Matrix::Zero(rows, units), c = Matrix::Zero(rows, units);
      Matrix a = Matrix::Zero(rows, units), z(rows, width), ch(rows, 2 * units);
      Matrix ha(rows, 2 * units), q(rows, units), e(rows, units);
      Eigen::ArrayXXf scores(rows, window);
      for (int64_t t = 0; t < steps; ++t) {
        step.at(a_prev_all, t, units) = a;
        step.at(h_prev_all, t, units) = h;
        auto xp = step.at(xp_all, t, features);
        xp.noalias() = a * w.projection_attn;
        xp += step.at(x_all, t, features);
        z.noalias() = xp * w.kernel;
        z.noalias() += h * w.recurrent;
        z.rowwise() += w.bias;
        auto gates = step.at(gates_all, t, width);
        gates.leftCols(2 * units) = z.leftCols(2 * units).array().logistic();
        gates.middleCols(2 * units, units) = z.middleCols(2 * units, units).array().tanh();
        gates.rightCols(units) = z.rightCols(units).array().logistic();
        c.array() = gates.middleCols(units, units).array() * c.array() +
                    gates.leftCols(units).array() * gates.middleCols(2 * units, units).array();
        h.array() = gates.rightCols(units).array() * c.array().tanh();
        step.at(c_all, t, units) = c;
        step.at(h_all, t, units) = h;

        ch << c, h;
        q.noalias() = ch * w.query;
        q.rowwise() += w.query_bias;
        step.at(q_all, t, units) = q;
        for (int64_t slot = 0; slot < window; ++slot) {
          const int64_t j = t - window + slot;
          if (j >= 0) {
            e.array() = (step.at(feat_all, j, units) + q).array().tanh();
          } else {
            e.array() = q.array().tanh();
          }
          scores.col(slot) = (e * w.v.transpose()).array();
        }
        auto alpha = step.at(alpha_all, t, window);
        const Eigen::ArrayXf peak = scores.rowwise().maxCoeff();
        alpha.array() = (scores.colwise() - peak).exp();
        const Eigen::ArrayXf total = alpha.array().rowwise().sum();
        alpha.array().colwise() /= total;
        a.setZero();
        for (int64_t slot = 0; slot < window; ++slot) {
          const int64_t j = t - window + slot;
          if (j >= 0) {
            a.array() += step.at(out_all, j, units).array().colwise() * alpha.col(slot).array();
          }
        }
        step.at(a_all, t, units) = a;
        ha << h, a;
        auto output = step.at(out_all, t, units);
        output.noalias() = ha * w.output;
        output.rowwise() += w.output_bias;
        step.at(feat_all, t, units).noalias() = output * w.attn_w;
      }
    });
  }

 private:
  int window_;
  int num_threads_;
};

class MelodyAttentionSequenceGradOp : public OpKernel {
 public:
  explicit MelodyAttentionSequenceGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& projection = context->input(0);
    const Tensor& recurrent = context->input(2);
    const Tensor& alpha_in = context->input(12);
    OP_REQUIRES(context, projection.dims() == 2 && recurrent.dims() == 2 && alpha_in.dims() == 3,
                InvalidArgument("bad ranks for the attention gradient's inputs"));
    const int64_t units = recurrent.dim_size(0), width = 4 * units;
    const int64_t features = projection.dim_size(1);
    const int64_t batch = alpha_in.dim_size(0), steps = alpha_in.dim_size(1);
    const int64_t window = alpha_in.dim_size(2);
    OP_REQUIRES(context,
                IsMatrix(projection, units, features) && IsMatrix(context->input(1), features, width) &&
                    IsMatrix(recurrent, units, width) && IsMatrix(context->input(3), units, units) &&
                    context->input(4).NumElements() == units &&
                    IsMatrix(context->input(5), 2 * units, units) &&
                    IsMatrix(context->input(6), 2 * units, units),
                InvalidArgument("attention weights do not match the units"));
    for (int index : {7, 8, 9, 11, 13}) {
      OP_REQUIRES(context, IsSequence(context->input(index), batch, steps, units),
                  InvalidArgument("attention sequence input ", index, " must be [batch, time, units]"));
    }
    OP_REQUIRES(context, IsSequence(context->input(10), batch, steps, width),
                InvalidArgument("gates must be [batch, time, 4 * units]"));

    const Matrix projection_t = ConstMatrixMap(projection.flat<float>().data(), units, features).transpose();
    const Matrix kernel_t =
        ConstMatrixMap(context->input(1).flat<float>().data(), features, width).transpose();
    const Matrix recurrent_t = ConstMatrixMap(recurrent.flat<float>().data(), units, width).transpose();
    const Matrix attn_w_t = ConstMatrixMap(context->input(3).flat<float>().data(), units, units).transpose();
    const Eigen::Map<const RowVector> v(context->input(4).flat<float>().data(), units);
    const Matrix query_t = ConstMatrixMap(context->input(5).flat<float>().data(), 2 * units, units).transpose();
    const Matrix output_t =
        ConstMatrixMap(context->input(6).flat<float>().data(), 2 * units, units).transpose();
    const float* out_all = context->input(7).flat<float>().data();
    const float* feat_all = context->input(8).flat<float>().data();
    const float* c_all = context->input(9).flat<float>().data();
    const float* gates_all = context->input(10).flat<float>().data();
    const float* q_all = context->input(11).flat<float>().data();
    const float* alpha_all = alpha_in.flat<float>().data();
    const float* d_above_all = context->input(13).flat<float>().data();

    float* grads[5];
    const int64_t widths[5] = {width, features, units, units, units};
    for (int index = 0; index < 5; ++index) {
      Tensor* tensor;
      OP_REQUIRES_OK(context, context->allocate_output(
                                  index, TensorShape({batch, steps, widths[index]}), &tensor));
      grads[index] = tensor->flat<float>().data();
    }
    Tensor* d_v_out;
    OP_REQUIRES_OK(context, context->allocate_output(5, TensorShape({units}), &d_v_out));
    float *dz_all = grads[0], *d_xp_all = grads[1], *d_q_all = grads[2], *d_out_all = grads[3],
          *d_feat_all = grads[4];
    // Later steps add to earlier steps' output and feature gradients through the window.
    std::copy(d_above_all, d_above_all + batch * steps * units, d_out_all);
    std::fill(d_feat_all, d_feat_all + batch * steps * units, 0.0f);
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads_, batch));
    const int64_t chunk_rows = std::max<int64_t>(1, (batch + chunks - 1) / chunks);
    Matrix v_sums = Matrix::Zero(chunks, units);

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix dh_next = Matrix::Zero(rows, units), dc_next = Matrix::Zero(rows, units);
      Matrix da_next = Matrix::Zero(rows, units), d_ha(rows, 2 * units), d_ch(rows, 2 * units);
      Matrix d_h(rows, units), d_a(rows, units), e(rows, units), d_pre(rows, units);
      Eigen::ArrayXXf d_alpha(rows, window), d_scores(rows, window), dc(rows, units),
          tanh_c(rows, units);
      RowVector v_sum = RowVector::Zero(units);
      for (int64_t t = steps - 1; t >= 0; --t) {
        auto d_out = step.at(d_out_all, t, units);
        auto d_feat = step.at(d_feat_all, t, units);
        d_out.noalias() += d_feat * attn_w_t;  // complete now: later steps are done
        d_ha.noalias() = d_out * output_t;
        d_h = d_ha.leftCols(units);
        d_a = d_ha.rightCols(units) + da_next;

        // Attention: the window's outputs and features, and the query.
        const auto alpha = step.at(alpha_all, t, window).array();
        const auto q = step.at(q_all, t, units);
        for (int64_t slot = 0; slot < window; ++slot) {
          const int64_t j = t - window + slot;
          if (j >= 0) {
            d_alpha.col(slot) = (step.at(out_all, j, units).array() * d_a.array()).rowwise().sum();
            step.at(d_out_all, j, units).array() += d_a.array().colwise() * alpha.col(slot);
          } else {
            d_alpha.col(slot).setZero();
          }
        }
        const Eigen::ArrayXf mean = (alpha * d_alpha).rowwise().sum();
        d_scores = alpha * (d_alpha.colwise() - mean);
        auto d_q = step.at(d_q_all, t, units);
        d_q.setZero();
        for (int64_t slot = 0; slot < window; ++slot) {
          const int64_t j = t - window + slot;
          if (j >= 0) {
            e.array() = (step.at(feat_all, j, units) + q).array().tanh();
          } else {
            e.array() = q.array().tanh();
          }
          v_sum.noalias() += d_scores.col(slot).matrix().transpose() * e;
          d_pre.array() = (d_scores.col(slot).matrix() * v).array() * (1.0f - e.array().square());
          d_q += d_pre;
          if (j >= 0) step.at(d_feat_all, j, units) += d_pre;
        }
        d_ch.noalias() = d_q * query_t;

        // The LSTM cell.
        const auto gates = step.at(gates_all, t, width);
        const auto i = gates.leftCols(units).array();
        const auto f = gates.middleCols(units, units).array();
        const auto g = gates.middleCols(2 * units, units).array();
        const auto o = gates.rightCols(units).array();
        const auto c = step.at(c_all, t, units).array();
        d_h.array() += d_ch.rightCols(units).array() + dh_next.array();
        tanh_c = c.tanh();
        dc = dc_next.array() + d_ch.leftCols(units).array() + d_h.array() * o * (1.0f - tanh_c.square());
        auto dz = step.at(dz_all, t, width);
        if (t > 0) {
          dz.middleCols(units, units).array() = dc * step.at(c_all, t - 1, units).array() * f * (1.0f - f);
        } else {
          dz.middleCols(units, units).setZero();  // c starts at zero
        }
        dz.leftCols(units).array() = dc * g * i * (1.0f - i);
        dz.middleCols(2 * units, units).array() = dc * i * (1.0f - g.square());
        dz.rightCols(units).array() = d_h.array() * tanh_c * o * (1.0f - o);
        dc_next.array() = dc * f;
        dh_next.noalias() = dz * recurrent_t;
        auto d_xp = step.at(d_xp_all, t, features);
        d_xp.noalias() = dz * kernel_t;
        da_next.noalias() = d_xp * projection_t;
      }
      v_sums.row(begin / chunk_rows) = v_sum;
    });
    Eigen::Map<RowVector>(d_v_out->flat<float>().data(), units) = v_sums.colwise().sum();
  }

 private:
  int num_threads_;
};

REGISTER_KERNEL_BUILDER(Name("MelodyAttentionSequence").Device(DEVICE_CPU),
                        MelodyAttentionSequenceOp);
REGISTER_KERNEL_BUILDER(Name("MelodyAttentionSequenceGrad").Device(DEVICE_CPU),
                        MelodyAttentionSequenceGradOp);

REGISTER_OP("MelodyDropout")
    .Input("x: float")     // [B, ...]
    .Input("seed: int64")  // [2]
    .Output("y: float")    // x, each element zeroed with probability `rate` or scaled by 1/(1-rate)
    .Attr("rate: float")
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return tensorflow::OkStatus();
    });

// The same seed drops the same elements, so the op is its own gradient: applied to
// the output's gradient with the forward seed, it gives the input's.
class MelodyDropoutOp : public OpKernel {
 public:
  explicit MelodyDropoutOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("rate", &rate_));
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
    OP_REQUIRES(context, rate_ >= 0.0f && rate_ < 1.0f, InvalidArgument("rate must be in [0, 1)"));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x_in = context->input(0);
    const Tensor& seed_in = context->input(1);
    OP_REQUIRES(context, x_in.dims() >= 1, InvalidArgument("x must have a batch dimension"));
    OP_REQUIRES(context, seed_in.NumElements() == 2, InvalidArgument("seed must hold 2 values"));
    Tensor* y_out;
    OP_REQUIRES_OK(context, context->allocate_output(0, x_in.shape(), &y_out));
    const int64_t rows = x_in.dim_size(0);
    const int64_t width = rows > 0 ? x_in.NumElements() / rows : 0;
    const auto seed_values = seed_in.flat<int64_t>();
    const uint64_t seed = static_cast<uint64_t>(seed_values(0)) * 0x9E3779B97F4A7C15ull ^
                          static_cast<uint64_t>(seed_values(1));
    // An element is kept when its 16 random bits are at least `threshold`.
    const uint32_t threshold = static_cast<uint32_t>(std::lround(rate_ * 65536.0));
    const float keep_scale = 1.0f / (1.0f - rate_);
    const float* x = x_in.flat<float>().data();
    float* y = y_out->flat<float>().data();

    ForEachRowChunk(rows, num_threads_, [&](int64_t begin, int64_t end) {
      // 16 random bits per element, drawn 64 at a time.
      std::vector<uint64_t> words((width + 3) / 4);
      const uint16_t* bits = reinterpret_cast<const uint16_t*>(words.data());
      for (int64_t row = begin; row < end; ++row) {
        const uint64_t row_seed = seed + 0xD1B54A32D192ED03ull * static_cast<uint64_t>(row + 1);
        for (size_t w = 0; w < words.size(); ++w) {
          // splitmix64 of a counter: every draw independent, so the loop vectorizes.
          uint64_t z = row_seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(w + 1);
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          words[w] = z ^ (z >> 31);
        }
        const float* in = x + row * width;
        float* out = y + row * width;
        for (int64_t k = 0; k < width; ++k) {
          out[k] = bits[k] >= threshold ? in[k] * keep_scale : 0.0f;
        }
      }
    });
  }

 private:
  float rate_;
  int num_threads_;
};

REGISTER_KERNEL_BUILDER(Name("MelodyDropout").Device(DEVICE_CPU), MelodyDropoutOp);
REGISTER_KERNEL_BUILDER(Name("MelodyLstmSequence").Device(DEVICE_CPU), MelodyLstmSequenceOp);
REGISTER_KERNEL_BUILDER(Name("MelodyLstmSequenceGrad").Device(DEVICE_CPU),
                        MelodyLstmSequenceGradOp);
