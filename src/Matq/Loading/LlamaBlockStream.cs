// Contract: a block-streamed view of an HF checkpoint (LlamaLoader's checks, nothing read up front). The model it builds
// has every parameter in place with its real shape, but the embedding, each decoder block and an untied head hold
// placeholders (one element broadcast to the shape: no memory) until Hold(block) reads that block's tensors from the
// safetensors shards (positioned reads, one tensor at a time) onto the device; disposing the hold drops them again.
// Blocks: Embedding = −1, decoder layers 0..L−1, Head = L (untied lm_head); model.norm is always resident (tiny).
// Host memory is then one block (plus the caller's activations), whatever the model's size.

namespace Matq.Loading;

public sealed class LlamaBlockStream : IDisposable
{
    public const int EmbeddingBlock = -1;

    private readonly SafetensorsCheckpoint _ckpt;
    private readonly Dictionary<int, List<(string Name, long[] Shape)>> _blocks = new();
    private readonly Dictionary<string, SafetensorsDtype> _sourceDtypes;
    private readonly Tensor _placeholder;
    private readonly HashSet<int> _held = new();
    private readonly Dictionary<string, Tensor> _overrides = new(StringComparer.Ordinal);   // changed in place: CPU copies

    private LlamaBlockStream(SafetensorsCheckpoint ckpt, LlamaConfig config, Device device, ScalarType dtype)
    {
        _ckpt = ckpt; Config = config; Device = device; Dtype = dtype;
        _placeholder = zeros(1, dtype: dtype, device: device);
        _sourceDtypes = LlamaLoader.SourceDtypes(ckpt, config);
        foreach (var (name, shape) in LlamaTensors.Expected(config))
        {
            int block = BlockOf(config, name);
            if (block == int.MinValue) continue;
            if (!_blocks.TryGetValue(block, out var list)) _blocks[block] = list = new();
            list.Add((name, shape));
        }
        Model = new LlamaForCausalLM(config, (name, shape) => BlockOf(config, name) == int.MinValue
            ? LlamaLoader.ReadModelTensor(ckpt, config, name, shape, device, dtype)
            : _placeholder.expand(shape), device, dtype);
        Model.eval();
    }

    /// <summary>The model whose blocks this stream pages in and out.</summary>
    public LlamaForCausalLM Model { get; }
    public LlamaConfig Config { get; }
    public Device Device { get; }
    public ScalarType Dtype { get; }
    public string Source => _ckpt.Source;

    /// <summary>The checkpoint's dtype of each model tensor (a split Phi-3 tensor: its fused tensor's), for the artifact.</summary>
    public IReadOnlyDictionary<string, SafetensorsDtype> SourceDtypes => _sourceDtypes;

    /// <summary>Opens <paramref name="folder"/> (config.json + shards), checks every tensor's name, dtype and shape against
    /// the config before anything is read, and builds the placeholder model on <paramref name="device"/>.</summary>
    public static LlamaBlockStream Open(string folder, Device? device = null, ScalarType dtype = ScalarType.Float32, Action<string>? warn = null)
    {
        var config = HfLlamaConfig.Read(folder);
        var ckpt = SafetensorsCheckpoint.Open(folder);
        try
        {
            LlamaLoader.Validate(ckpt, config, warn);
            return new LlamaBlockStream(ckpt, config, device ?? CPU, dtype);
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    /// <summary>The block a model tensor belongs to, or int.MinValue for the always-resident ones (final norm).</summary>
    public static int BlockOf(LlamaConfig config, string name)
    {
        if (name == "model.embed_tokens.weight") return EmbeddingBlock;
        if (name.StartsWith("lm_head.", StringComparison.Ordinal)) return config.NumLayers;
        const string prefix = "model.layers.";
        if (name.StartsWith(prefix, StringComparison.Ordinal))
        {
            int dot = name.IndexOf('.', prefix.Length);
            return int.Parse(name.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.CultureInfo.InvariantCulture);
        }
        return int.MinValue;
    }

    /// <summary>Reads block <paramref name="block"/> onto the device until the returned hold is disposed. Holding a tied
    /// model's head holds the embedding. A block already held is not read again (the inner hold is a no-op).</summary>
    public IDisposable Hold(int block)
    {
        if (block == Config.NumLayers && Config.TieWordEmbeddings) block = EmbeddingBlock;
        if (!_blocks.TryGetValue(block, out var tensors) || !_held.Add(block)) return NoHold.Instance;
        try
        {
            using var noGrad = no_grad();
            foreach (var (name, shape) in tensors)
            {
                using var real = _overrides.TryGetValue(name, out var kept) ? kept.to(Dtype, Device, copy: true)
                    : LlamaLoader.ReadModelTensor(_ckpt, Config, name, shape, Device, Dtype);
                Parameter(name).set_(real);
            }
        }
        catch
        {
            Drop(block);
            throw;
        }
        return new BlockHold(this, block);
    }

    /// <summary>Keeps <paramref name="value"/> (a held block's parameter changed in place, e.g. LET's folded norms and
    /// linears) as tensor <paramref name="name"/>: later holds and <see cref="ReadSource"/> return it instead of the
    /// checkpoint's. Host memory grows by the tensors kept (a copy in the model dtype).</summary>
    public void Override(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (BlockOf(Config, name) == int.MinValue || !_sourceDtypes.ContainsKey(name))
            throw new ArgumentException($"'{name}' is not a streamed tensor of this model", nameof(name));
        using var noGrad = no_grad();
        var copy = value.detach().to(Dtype, CPU, copy: true).DetachFromDisposeScope();   // owned here until Dispose
        if (_overrides.Remove(name, out var old)) old.Dispose();
        _overrides[name] = copy;
    }

    /// <summary>A float model tensor as the checkpoint stores it (dtype and bytes; Phi-3 split rows cut from the fused one),
    /// or, for a tensor kept by <see cref="Override"/>, that tensor in the checkpoint's dtype.</summary>
    public (SafetensorsDtype Dtype, byte[] Data) ReadSource(string name, long[] shape)
    {
        var dtype = _sourceDtypes.TryGetValue(name, out var d) ? d
            : throw new MatqException($"{_ckpt.Source}: the model has no tensor '{name}'");
        if (dtype is SafetensorsDtype.F64) dtype = SafetensorsDtype.F32;   // a .matq stores F32, F16 or BF16
        if (_overrides.TryGetValue(name, out var kept))
        {
            var keptType = dtype switch { SafetensorsDtype.BF16 => ScalarType.BFloat16, SafetensorsDtype.F16 => ScalarType.Float16, _ => ScalarType.Float32 };
            using var host = kept.to(keptType, CPU).contiguous();
            return (dtype, host.bytes.ToArray());
        }
        if (LlamaTensors.CheckpointSource(Config, name).Name == name && dtype == _ckpt.Get(name).Dtype)
            return (dtype, _ckpt.ReadBytes(name));   // the artifact writer checks the values are finite
        var type = dtype switch { SafetensorsDtype.BF16 => ScalarType.BFloat16, SafetensorsDtype.F16 => ScalarType.Float16, _ => ScalarType.Float32 };
        using var t = LlamaLoader.ReadModelTensor(_ckpt, Config, name, shape, CPU, type);
        return (dtype, t.contiguous().bytes.ToArray());
    }

    /// <summary>A reader of tensor <paramref name="name"/>'s stored bytes straight from the shards (positioned reads, any
    /// range, thread-safe) and its dtype, when the artifact would store those bytes as they are (what <see cref="ReadSource"/>
    /// returns whole); null for a tensor kept by <see cref="Override"/>, cut from a fused one, or converted (F64).</summary>
    public (SafetensorsDtype Dtype, Matq.Quantization.Pipeline.StoredBytesReader Read)? StoredReader(string name)
    {
        if (!_sourceDtypes.TryGetValue(name, out var dtype) || dtype is SafetensorsDtype.F64 || _overrides.ContainsKey(name)) return null;
        if (LlamaTensors.CheckpointSource(Config, name).Name != name || dtype != _ckpt.Get(name).Dtype) return null;
        return (dtype, (offset, destination) => _ckpt.ReadRange(name, offset, destination));
    }

    private Tensor Parameter(string name) => Model.get_parameter(name)
        ?? throw new InvalidOperationException($"the streamed model has no parameter '{name}'");

    private void Drop(int block)
    {
        using var noGrad = no_grad();
        foreach (var (name, shape) in _blocks[block])
        {
            using var view = _placeholder.expand(shape);
            Parameter(name).set_(view);
        }
        _held.Remove(block);
    }

    public void Dispose()
    {
        foreach (var t in _overrides.Values) t.Dispose();
        _overrides.Clear();
        Model.Dispose();
        _placeholder.Dispose();
        _ckpt.Dispose();
    }

    private sealed class BlockHold(LlamaBlockStream owner, int block) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            owner.Drop(block);
        }
    }

    internal sealed class NoHold : IDisposable
    {
        public static readonly NoHold Instance = new();
        public void Dispose() { }
    }
}
