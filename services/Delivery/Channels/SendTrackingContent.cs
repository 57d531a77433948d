using System.Net;

namespace Crm.Delivery.Channels;

/// <summary>
/// A request body that reports when the handler starts writing it: that happens only once a connection is up
/// and the request headers are out, so before it nothing can have reached the provider and a retry is safe.
/// After it, a timeout or a lost connection leaves the send unconfirmed (see <see cref="SendOutcomeKind.Unconfirmed"/>).
/// </summary>
internal sealed class SendTrackingContent : HttpContent
{
    private readonly HttpContent _inner;
    private readonly Action _started;

    public SendTrackingContent(HttpContent inner, Action started)
    {
        _inner = inner;
        _started = started;
        foreach (var header in inner.Headers) Headers.TryAddWithoutValidation(header.Key, header.Value);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        _started();
        return _inner.CopyToAsync(stream, context, cancellationToken);
    }

    protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        _started();
        _inner.CopyTo(stream, context, cancellationToken);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = _inner.Headers.ContentLength ?? -1;
        return length >= 0;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _inner.Dispose();
        base.Dispose(disposing);
    }
}
