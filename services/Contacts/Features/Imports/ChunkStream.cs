using Crm.Contacts.V1;
using Grpc.Core;

namespace Crm.Contacts.Features.Imports;

/// <summary>The data chunks of a client-streamed import, read as one forward-only stream.</summary>
public sealed class ChunkStream(IAsyncStreamReader<ImportChunk> chunks) : Stream
{
    private ReadOnlyMemory<byte> _current;
    private bool _done;

    public long BytesRead { get; private set; }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_current.IsEmpty)
        {
            if (_done || !await chunks.MoveNext(cancellationToken))
            {
                _done = true;
                return 0;
            }
            if (chunks.Current.PartCase != ImportChunk.PartOneofCase.Data)
                throw new Crm.BuildingBlocks.Errors.InvalidArgumentException("data", "only the first chunk may carry the header");
            _current = chunks.Current.Data.Memory;
        }
        var n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        BytesRead += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("Read asynchronously.");
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => BytesRead; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
