import type { RequestSizeLimitPolicy } from '@flowgate/contracts';
import { FlowgateError } from '../../errors/index.js';
import type { PolicyFactory } from './policy.js';

/**
 * `request-size-limit`: a body declared larger than `maxBytes` is refused before it is
 * read; a body sent without a length is cut off (and the request refused) once it
 * passes the limit, so the upstream never receives more.
 */
export const requestSizeLimitPolicy: PolicyFactory<RequestSizeLimitPolicy> = {
  name: 'request-size-limit',
  order: 30,
  create(options) {
    return (exchange) => {
      const length = exchange.req.headers['content-length'];
      if (length !== undefined && Number(length) > options.maxBytes) {
        throw new FlowgateError('FLOWGATE_ERR_REQUEST_TOO_LARGE', `This route takes bodies of at most ${options.maxBytes} bytes.`);
      }
      exchange.maxBodyBytes = options.maxBytes;
    };
  },
};
